/* What a node keeps after joining: its id, credential and the controller it
 * belongs to (DATA-DIR/node.json, mode 0600) next to the CA it pinned
 * (DATA-DIR/ca.pem) and its mesh key (DATA-DIR/wg.key). */
#pragma once

#include "common/util.h"

struct node_state {
    char *controller;   /* https://host:port */
    char *node_id;
    char *credential;   /* bearer secret; never logged */
    char *name;
    char *mesh_ip;      /* may be NULL */
    char *libvirt_uri;  /* URI given at join; may be NULL */
    char *key_pin;      /* "sha256//..." of the controller's key seen at
                           join, required on every connection; NULL for
                           nodes joined before pins (the CA check alone) */
    int64_t heartbeat_s;
    /* What the controller was told at join, so the agent holds it to that
     * at run (0: joined before these were kept). */
    int64_t port_min, port_max; /* range of host ports it may publish */
    int64_t wg_port;            /* the mesh's UDP port */
};

/* True when DATA-DIR already holds a node identity. */
bool node_state_exists(const char *data_dir);
/* Load DATA-DIR/node.json. 0, -ENOENT when not joined, -EINVAL when the
 * file is malformed (message logged), or -errno. */
int node_state_load(const char *data_dir, struct node_state *ret);
/* Write DATA-DIR/node.json atomically with mode 0600. 0 or -errno. */
int node_state_save(const char *data_dir, const struct node_state *st);
/* DATA-DIR/ca.pem; caller frees. */
char *node_state_ca_path(const char *data_dir);
/* DATA-DIR/wg.key, the mesh private key made at join (never sent);
 * caller frees. */
char *node_state_wg_key_path(const char *data_dir);
void node_state_clear(struct node_state *st);
