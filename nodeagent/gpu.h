/* GPU inventory for VFIO passthrough: PCI display and 3D controllers
 * (class 03xx), the other functions of the same card, their IOMMU group,
 * NUMA node and bound driver, read through a root prefix so tests use fake
 * sysfs trees. Names come from the pci.ids database through libpci. */
#pragma once

#include "common/util.h"
#include "nodeagent/vmxml.h"

#include <jansson.h>

/* A PCI address "DDDD:BB:SS.F" in canonical lower-case form. */
#define GPU_ADDR_LEN 12

struct gpu_fn {
    char addr[GPU_ADDR_LEN + 1];
    uint32_t class_code;     /* 0x030000, 0x040300, ... */
    uint16_t vendor, device;
    char *driver;            /* "" when none is bound */
};

struct gpu {
    char addr[GPU_ADDR_LEN + 1];
    uint32_t class_code;
    uint16_t vendor, device, subsys_vendor, subsys_device;
    char *vendor_name;       /* from pci.ids, or "" */
    char *device_name;       /* from pci.ids, or "" */
    char *model;             /* offer/placement key: the marketing name in
                                brackets of device_name without spaces, or
                                "VVVV:DDDD" when pci.ids does not know it */
    struct gpu_fn *functions;/* every function of the card (same slot),
                                the GPU first */
    size_t n_functions;
    int iommu_group;         /* -1: none */
    char **group;            /* every member of the IOMMU group */
    size_t n_group;
    bool isolatable;         /* group holds only the card and PCIe bridges */
    int numa_node;           /* -1: unknown */
    char *cpulist;           /* local CPUs, "0-7,16-23", or "" */
    char *driver;            /* "" when none is bound */
    char *reason;            /* NULL when usable, else why not */
};

struct gpu_inventory {
    bool iommu;              /* /sys/kernel/iommu_groups has groups */
    struct gpu *gpus;
    size_t n;
};

/* Read every class 03xx function under ROOT/sys/bus/pci/devices.
 * A host without PCI sysfs has no GPUs (0). 0 or -errno (-ENOMEM never:
 * allocation aborts). Clear with gpu_inventory_clear(). */
int gpu_inventory_collect(const char *root, struct gpu_inventory *ret);
void gpu_inventory_clear(struct gpu_inventory *inv);
/* The GPU with address addr, or NULL. */
const struct gpu *gpu_inventory_find(const struct gpu_inventory *inv,
                                     const char *addr);

/* Names for vendor (and device, when ret_device is not NULL) from pci.ids
 * through libpci; "" when unknown. Caller frees both. Names once found are
 * remembered; libpci's parsed pci.ids (about 2 MiB) is let go at the end
 * of each gpu_inventory_collect. */
void gpu_pci_names(uint16_t vendor, uint16_t device, char **ret_vendor,
                   char **ret_device);
/* The offer key of a pci.ids device name ("AD102 [GeForce RTX 4090]" ->
 * "GeForceRTX4090"); caller frees. */
char *gpu_model_of(const char *device_name, uint16_t vendor, uint16_t device);

/* The inventory as register and status posts carry it: an array of GPU
 * objects (new reference). */
json_t *gpu_inventory_to_json(const struct gpu_inventory *inv);

/* The passthrough part of a VM's domain for a set of GPUs: every function
 * of each card, and the CPUs and NUMA nodes local to them. */
struct gpu_plan {
    struct vmxml_gpu *gpus;
    size_t n;
    char *cpuset;            /* NULL when no GPU knows its local CPUs */
    char *nodeset;           /* NULL when a GPU's NUMA node is unknown */
};
/* Plan passthrough of the GPUs at addrs. -ENODEV when one is not in the
 * inventory, -EBUSY when one is unusable (reason logged by the caller from
 * the inventory). Clear with gpu_plan_clear(); the plan points into inv,
 * which must outlive it. */
int gpu_plan_build(const struct gpu_inventory *inv, const char *const *addrs,
                   size_t n, struct gpu_plan *ret);
void gpu_plan_clear(struct gpu_plan *p);

/* A PCI function a domain on the host holds (a hostdev in its
 * definition); both strings borrowed. */
struct gpu_held {
    const char *addr;
    const char *domain;
};
/* One card the controller assigned to a VM: the graphics function's
 * address and the functions it named (all borrowed). */
struct gpu_request {
    const char *address;
    const char *const *functions;
    size_t n_functions;
};
/* Plan passthrough of what the controller assigned, but only what this
 * node's own inventory `inv` allows, since the controller is input like
 * any other and must not make the node hand out its NIC or disk
 * controller: each address must be a GPU of the inventory, each function
 * named one of that card's, the GPU usable (IOMMU on, group isolatable,
 * not the boot display, no host driver using it), no card asked for
 * twice, and no function of the card nor member of its IOMMU group held
 * by a domain in `held` (the caller leaves out the VM's own). The plan
 * takes every function of the card from the inventory. 0, or -EPERM with
 * *ret_reason (caller frees) naming the address and why. */
int gpu_plan_checked(const struct gpu_inventory *inv,
                     const struct gpu_request *req, size_t n,
                     const struct gpu_held *held, size_t n_held,
                     struct gpu_plan *ret, char **ret_reason);

/* A PCI device as libvirt's node-device API describes it
 * (virNodeDeviceGetXMLDesc of a pci capability). */
struct gpu_nodedev {
    char addr[GPU_ADDR_LEN + 1];
    uint16_t vendor, device;
    int iommu_group;         /* -1: not given */
    char *driver;            /* NULL: none named */
};
/* Parse one node device's XML. 0, or -EINVAL when it is not a PCI device
 * or malformed. Clear with gpu_nodedev_clear(). */
int gpu_nodedev_parse(const char *xml, struct gpu_nodedev *ret);
void gpu_nodedev_clear(struct gpu_nodedev *d);
/* Compare the inventory with libvirt's view of the same functions: a GPU
 * whose ids, IOMMU group or bound driver libvirt sees otherwise is made
 * unusable with a reason naming both views (libvirt's managed hostdevs act
 * on what libvirt sees). Functions libvirt does not list are left alone.
 * The number of GPUs marked. */
size_t gpu_inventory_crosscheck(struct gpu_inventory *inv,
                                const struct gpu_nodedev *devs, size_t n);
/* The inventory under root, cross-checked against the PCI node devices'
 * XML in nodedevs (NULL-terminated, or NULL when libvirt lists none).
 * 0 or -errno from the collection; clear with gpu_inventory_clear(). */
int gpu_inventory_read(const char *root, char *const *nodedevs,
                       struct gpu_inventory *ret);
/* The report register and status posts carry: {gpus: [...], iommu} from
 * the sysfs under root, cross-checked against the PCI node devices'
 * XML in nodedevs (NULL-terminated, or NULL when libvirt lists none).
 * 0 or -errno from the collection; *ret is a new reference. */
int gpu_report(const char *root, char *const *nodedevs, json_t **ret);
