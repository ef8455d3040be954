/* GPUs on the controller: each node's report stored per GPU, which the
 * provider offers, and the one VM each is assigned to. A VM asks for
 * COUNT GPUs of a MODEL; the placing transaction takes free offered ones
 * on the chosen node (gpus_assign) and they return on delete or loss. */
#pragma once

#include "common/jsonutil.h"
#include "controller/store.h"

/* A model name as the agent derives it from pci.ids ("GeForceRTX4090",
 * "10de:2684"): 1..64 of [A-Za-z0-9:._+-]. */
bool gpu_model_ok(const char *s);
/* A request "MODEL[:COUNT]" (COUNT 1 to 16, 1 when omitted), as create
 * and GET /v1/offers take it. 0, or -EINVAL (nothing written). */
int gpu_spec_parse(const char *s, char **ret_model, int64_t *ret_count);
/* A canonical PCI address "dddd:bb:ss.f". */
bool gpu_addr_ok(const char *s);

/* Check the AGENT_GPUS array of a register or status post. 0 or -EINVAL
 * with *err filled (caller clears). */
int gpus_report_check(const json_t *gpus, struct jerr *err);
/* Record node_id's report inside the caller's transaction: each GPU's row
 * is inserted or updated; one no longer reported stays (with its offer and
 * holder) but is marked absent, which placement never takes. iommu < 0:
 * not reported. 0 or the store's -errno. */
int gpus_record(struct store *s, const char *node_id, const json_t *gpus,
                int iommu);

/* Take `count` free, offered, usable, present GPUs of `model` on node_id
 * for vm_id, those of one NUMA node first, inside the placing transaction
 * (each row only while its vm_id is NULL, so two placements never share
 * one). 0, -EBUSY when fewer are free (nothing taken: the caller rolls
 * back), or the store's -errno. */
int gpus_assign(struct store *s, const char *node_id, const char *vm_id,
                const char *model, int64_t count);
/* Free every GPU vm_id holds. The number freed or -errno. */
int gpus_release(struct store *s, const char *vm_id);
/* The GPUs vm_id holds, as the desired document and GET /v1/vms/{id}
 * carry them: [{address, model, functions, numa_node, cpulist}], ordered
 * by address (new reference; an empty array on a store error). */
json_t *gpus_of_vm(struct store *s, const char *vm_id);
