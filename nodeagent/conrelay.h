/* Interactive serial consoles: for each session the controller lists in
 * the desired document (AGENT_CONSOLES), a thread connects out to the
 * controller (HTTP Upgrade with the node's credential) and pumps bytes
 * between that connection and the domain's serial console; for a log
 * session it posts the end of the VM's serial log instead. */
#pragma once

#include <jansson.h>

struct conrelay;

/* A relay set talking to `controller` as the node (credential, CA file,
 * key pin; copied), to libvirt at `uri`, reading logs under `data_dir`.
 * Never NULL. */
struct conrelay *conrelay_new(const char *controller, const char *credential,
                              const char *ca_path, const char *key_pin,
                              const char *uri, const char *data_dir);
/* Start sessions the (validated) desired document lists that are not
 * running yet; stop those it no longer lists. */
void conrelay_sync(struct conrelay *r, const json_t *doc);
/* Stop every session, wait for their threads, free. Accepts NULL. */
void conrelay_free(struct conrelay *r);
