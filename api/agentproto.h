/* Limits of the controller-agent protocol that both ends check (they meet
 * only in api/, so each number is written once, here). */
#pragma once

/* A status post's `refused` list: what the node's policy left out of its
 * desired document, as {object, reason}. */
#define AGENT_REFUSED_MAX 64
#define AGENT_REFUSED_OBJECT_MAX 80
#define AGENT_REFUSED_REASON_MAX 300
