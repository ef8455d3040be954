/* Health checks of a VM's services (a TCP connect, an HTTP GET, a UDP
 * request and its answer): the spec as one struct with one JSON reader and
 * writer that the API, the desired document and the agent share, its
 * bounds, and the `fogctl --health` syntax. */
#pragma once

#include "common/jsonutil.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hc_type { HC_TCP, HC_HTTP, HC_UDP, HC_TYPE_MAX };
enum hc_action { HC_ACTION_NONE, HC_ACTION_RESTART, HC_ACTION_MAX };
enum hc_state { HC_UNKNOWN, HC_HEALTHY, HC_UNHEALTHY, HC_STATE_MAX };

/* Checks of one VM. */
#define HC_PER_VM_MAX 8
/* Seconds between two probes, and how long one may take (at most the
 * interval). */
#define HC_INTERVAL_DEFAULT_S 10
#define HC_INTERVAL_MAX_S 3600
#define HC_TIMEOUT_DEFAULT_S 2
#define HC_TIMEOUT_MAX_S 60
/* Passes in a row before healthy (rise) and failures in a row before
 * unhealthy (fall). */
#define HC_RISE_DEFAULT 1
#define HC_FALL_DEFAULT 3
#define HC_THRESHOLD_MAX 20
/* An HTTP check's path: '/' then printable ASCII without spaces. */
#define HC_PATH_MAX 256
/* A UDP check's request, and the prefix its answer must start with. */
#define HC_PAYLOAD_MAX 512
/* The restart action: intervals unhealthy before the VM is restarted, and
 * the longest wait between two restarts (the wait doubles after each
 * restart while the check stays unhealthy, from restart_after intervals,
 * and starts again once it is healthy). */
#define HC_RESTART_AFTER_DEFAULT 3
#define HC_RESTART_AFTER_MAX 100
#define HC_RESTART_BACKOFF_MAX_S 3600
/* Restarts in a row after which the action gives up until the check is
 * healthy again (about 7 hours of trying at the longest waits). */
#define HC_RESTARTS_MAX 10
/* The last probe's output (its reason) as the node reports it. */
#define HC_OUTPUT_MAX 200

struct hc_spec {
    char id[37];            /* "" until the controller names it */
    enum hc_type type;
    int port;               /* the VM's port, 1..65535 */
    char *path;             /* HC_HTTP only (NULL otherwise) */
    int status_min, status_max;
    uint8_t *payload;       /* HC_UDP: what is sent (1..HC_PAYLOAD_MAX) */
    size_t payload_len;
    uint8_t *expect;        /* HC_UDP: the answer's prefix (NULL: any) */
    size_t expect_len;
    int interval_s, timeout_s, rise, fall;
    enum hc_action action;
    int restart_after;
};

const char *hc_type_name(enum hc_type t);
const char *hc_action_name(enum hc_action a);
const char *hc_state_name(enum hc_state s);
/* The state named s; -EINVAL for another text. */
int hc_state_from_name(const char *s, enum hc_state *ret);

/* Read a check from JSON {id?, type, port, path?, status_min?,
 * status_max?, payload_hex?, expect_hex?, interval_s?, timeout_s?, rise?,
 * fall?, action?, restart_after?}, filling defaults and checking every
 * bound. `strict`: refuse members it does not know (an API body; a
 * desired document from a newer controller may carry more). 0 and *ret
 * (clear with hc_spec_clear), or -EINVAL with *err (caller clears). */
int hc_spec_from_json(const json_t *j, bool strict, struct hc_spec *ret,
                      struct jerr *err);
/* The check as JSON, every member written (the id when it has one).
 * Caller owns it. */
json_t *hc_spec_to_json(const struct hc_spec *s);
void hc_spec_clear(struct hc_spec *s);
/* Seconds unhealthy before the restart action first acts. */
int64_t hc_restart_grace_s(const struct hc_spec *s);
/* Seconds after the restarts-th restart in a row before the next:
 * doubling from the grace, capped at HC_RESTART_BACKOFF_MAX_S. */
int64_t hc_restart_backoff_s(const struct hc_spec *s, int64_t restarts);

/* `fogctl --health` syntax:
 *   PORT:TYPE[:PATH][,KEY=VALUE]...
 * TYPE tcp, http or udp; PATH (http) default "/". Keys: status=N or
 * N-M, interval=S, timeout=S, rise=N, fall=N, action=none|restart,
 * restart-after=N, send=TEXT, send-hex=HEX, expect=TEXT, expect-hex=HEX.
 * 0 and *ret the API's JSON body (caller owns), or -EINVAL and *ret_why
 * a sentence (caller frees). Bounds are the API's to check. */
int hc_spec_parse_text(const char *text, json_t **ret, char **ret_why);
