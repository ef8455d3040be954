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
    int64_t place_gen;   /* placement the domain was made for (absent: 0) */
    int64_t disk_gib;    /* size the disk was last grown to */
    char spec[65];       /* hash of the spec the definition came from */
};

struct vmxml_nic {
    const char *mac;     /* 52:54:00:xx:xx:xx */
    const char *bridge;  /* host bridge, an interface name */
    int64_t mtu;         /* 0: the bridge's */
    const char *tap;     /* NULL, or the host tap's name (target dev) */
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
};

/* Domain name for a VM id: "fog-<id>"; caller frees. */
char *vmxml_domain_name(const char *vm_id);
/* The VM id in a domain name if it is "fog-<uuid>", else NULL (pointer into
 * name). */
const char *vmxml_name_vm_id(const char *name);

/* True when s is valid UTF-8 without control characters: the rule any
 * free text must pass before it goes into XML. */
bool vmxml_text_ok(const char *s);
/* True for a unicast MAC "xx:xx:xx:xx:xx:xx" (hex, lower or upper). */
bool vmxml_mac_ok(const char *s);
/* True for a Linux interface name (1..15 of [A-Za-z0-9_.-]). */
bool vmxml_ifname_ok(const char *s);

/* Build the domain XML. 0, or -EINVAL when a field is out of bounds or
 * unsafe (vm id not a UUID, relative or odd path, bad MAC/bridge, name
 * with control characters). *ret_xml is owned by the caller. */
int vmxml_build(const struct vmxml_spec *s, char **ret_xml);
/* Only the metadata element, without namespace, as virDomainSetMetadata()
 * takes it. */
int vmxml_meta_build(const struct vmxml_meta *m, char **ret_xml);
/* Parse a metadata element as virDomainGetMetadata() returns it.
 * 0 or -EINVAL. On success free ret->name with vmxml_meta_clear(). */
int vmxml_meta_parse(const char *xml, struct vmxml_meta *ret);
void vmxml_meta_clear(struct vmxml_meta *m);
