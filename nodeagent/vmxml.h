/* Libvirt domain XML for a fogfabric VM, written with libxml2's
 * xmlTextWriter so no input can break out of an attribute or element, and
 * the fogfabric metadata element the agent uses to recognise its domains
 * and to remember what it last did to them. */
#pragma once

#include "common/util.h"

#define VMXML_NS_URI "https://fogfabric.org/xmlns/domain/1"
#define VMXML_NS_PREFIX "fog"
#define VMXML_NAME_PREFIX "fog-"

/* What the agent keeps in the domain's <metadata>. */
struct vmxml_meta {
    char vm_id[37];
    char *name;          /* the tenant's VM name (display only) */
    bool power_running;  /* power state the agent last drove it to */
    int64_t reboot_gen;  /* last reboot generation carried out */
    int64_t start_gen;   /* start generation last acted on (absent: 0) */
    int64_t place_gen;   /* placement the domain was made for (absent: -1) */
    int64_t disk_gib;    /* size the disk was last grown to */
    int64_t revert_gen;  /* last snapshot revert carried out (absent: 0) */
    char spec[65];       /* hash of the spec the definition came from */
};

struct vmxml_nic {
    const char *mac;     /* 52:54:00:xx:xx:xx */
    const char *bridge;  /* host bridge, an interface name */
    int64_t mtu;         /* 0: the bridge's */
    const char *tap;     /* NULL, or the host tap's name (target dev) */
};

/* One passed-through card: every PCI function of it ("dddd:bb:ss.f", the
 * GPU first), all in one guest slot behind its own PCIe root port. */
struct vmxml_gpu {
    const char *const *functions;
    size_t n_functions;
    const char *rom_file;   /* NULL, or an absolute path to a ROM image */
};

/* Limits the host's owner sets on every VM so tenants cannot starve the
 * host's own work; 0 means none for each. */
struct vmxml_limits {
    int64_t cpu_shares;     /* cputune weight per vCPU */
    int64_t cpu_cap_pct;    /* each vCPU's cap, % of one host CPU */
    int64_t disk_iops;      /* iotune total_iops_sec */
    int64_t disk_bytes_sec; /* iotune total_bytes_sec */
    int64_t net_kbps;       /* bandwidth average, KiB/s, each direction */
};

struct vmxml_spec {
    const struct vmxml_meta *meta;
    int64_t vcpus;
    int64_t memory_mib;
    bool kvm;               /* domain type kvm, else qemu (TCG), which
                               also drops the NIC option ROM, USB and the
                               balloon to boot small guests fast */
    const char *arch;       /* NULL: x86_64 */
    const char *disk_path;  /* absolute path of the qcow2 overlay */
    const char *seed_path;  /* NULL, or a NoCloud seed image: virtio disk
                               vdb, raw, read-only */
    const char *console_log;/* absolute path the serial console logs to */
    const struct vmxml_nic *nics;
    size_t n_nics;
    /* GPU passthrough (n_gpus > 0 makes the machine q35 with PCIe root
     * ports and managed hostdevs that libvirt moves to vfio-pci). */
    const struct vmxml_gpu *gpus;
    size_t n_gpus;
    const char *cpuset;     /* NULL, or CPUs ("0-7,16-23") the vCPUs and the
                               emulator are pinned to: the GPUs' local ones */
    const char *nodeset;    /* NULL, or host NUMA nodes ("0") the memory
                               is bound to */
    bool hugepages;         /* back the guest memory with huge pages */
    bool hide_kvm;          /* hide the KVM signature (consumer drivers) */
    const struct vmxml_limits *limits; /* NULL: none */
};

/* The benchmark's probe guest: a transient domain booted straight from a
 * kernel and initramfs, no disk or NIC, the challenge on its kernel
 * command line, its serial console logged to a file. */
struct vmxml_probe {
    const char *name;       /* "fogbench-<uuid>": never one of our VMs */
    bool kvm;
    int64_t vcpus, memory_mib;
    const char *kernel, *initrd; /* absolute paths */
    const char *cmdline;    /* printable ASCII */
    const char *console_log;
};
/* Build its domain XML: 0, or -EINVAL when a field is unsafe or out of
 * bounds. *ret_xml is the caller's. */
int vmxml_probe_build(const struct vmxml_probe *p, char **ret_xml);

/* Domain name for a VM id: "fog-<id>"; caller frees. */
char *vmxml_domain_name(const char *vm_id);
/* The VM id in a domain name if it is "fog-<uuid>", else NULL (pointer into
 * name). */
const char *vmxml_name_vm_id(const char *name);

/* True when s is valid UTF-8 without control characters: the rule any
 * free text must pass before it goes into XML. */
bool vmxml_text_ok(const char *s);

/* Build the domain XML. 0, or -EINVAL when a field is out of bounds or
 * unsafe (vm id not a UUID, relative or odd path, bad MAC/bridge, name
 * with control characters). *ret_xml is owned by the caller. */
int vmxml_build(const struct vmxml_spec *s, char **ret_xml);
/* The host PCI addresses of every PCI hostdev in a domain XML
 * ("dddd:bb:ss.f"; USB and mediated ones are skipped), in document order,
 * so a restarted agent knows what its domains hold.
 * 0 or -EINVAL; *ret is a NULL-terminated array the caller frees with
 * vmxml_strv_free(). */
int vmxml_hostdevs_parse(const char *xml, char ***ret);
void vmxml_strv_free(char **v);
/* The interfaces of a domain XML as virsh domiflist shows them, in
 * document order (at most AGENT_VM_NICS_MAX; one without a valid type or
 * MAC is left out, a target, source or model that is not a short
 * printable text reads as NULL). 0 or -EINVAL when it is not XML;
 * *ret (NULL when none) is the caller's, each entry cleared with
 * am_iface_clear(). */
struct am_iface;
int vmxml_ifaces_parse(const char *xml, struct am_iface **ret, size_t *ret_n);
/* True for a CPU list like "0-7,16-23" (digits, ranges, commas). */
bool vmxml_cpuset_ok(const char *s);
/* True for a canonical PCI address "dddd:bb:ss.f" (lower-case hex, function
 * 0-7): safe in a sysfs path and in a hostdev. */
bool vmxml_pci_addr_ok(const char *s);
/* Only the metadata element, without namespace, as virDomainSetMetadata()
 * takes it. */
int vmxml_meta_build(const struct vmxml_meta *m, char **ret_xml);
/* Parse a metadata element as virDomainGetMetadata() returns it.
 * 0 or -EINVAL. On success free ret->name with vmxml_meta_clear(). */
int vmxml_meta_parse(const char *xml, struct vmxml_meta *ret);
void vmxml_meta_clear(struct vmxml_meta *m);

/* One of our snapshots of a domain: libvirt names it as the tenant did and
 * its description carries VMXML_SNAPSHOT_TAG and the snapshot's id. */
#define VMXML_SNAPSHOT_TAG "fogfabric-snapshot "
struct vmxml_snap {
    char id[37];
    char *name;
    bool checkpoint;     /* taken running: memory and disk */
    int64_t created_at;  /* unix seconds */
};
/* The <domainsnapshot> to create snapshot `name` (a hostname-like name)
 * with id `id`. 0 or -EINVAL; *ret_xml owned by the caller. */
int vmxml_snapshot_build(const char *name, const char *id, char **ret_xml);
/* Read a snapshot's XML (virDomainSnapshotGetXMLDesc). 0, -ENOENT when
 * it is not one of ours, or -EINVAL. Free ret->name with
 * vmxml_snapshot_clear(). */
int vmxml_snapshot_parse(const char *xml, struct vmxml_snap *ret);
void vmxml_snapshot_clear(struct vmxml_snap *s);
