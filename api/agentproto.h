/* The node agent protocol's names and limits that both ends must agree
 * on (controller and agent meet only in api/, so each is written once,
 * here). */
#pragma once

#include <stdint.h>

/* The controller names, on every answer to GET /v1/agent/desired, the
 * longest it holds such a poll (seconds); the agent asks for that wait
 * next and gives up on a poll that silent for AGENT_POLL_MARGIN_S longer,
 * so a poll lost in a partition is replaced soon after the wait. */
#define AGENT_POLL_WAIT_HEADER "Fog-Poll-Wait"
/* What the agent asks for before it has heard the controller's wait. */
#define AGENT_POLL_WAIT_DEFAULT_S 30
#define AGENT_POLL_MARGIN_S 10

/* The contract's version. An agent names the version it speaks on every
 * request (AGENT_CONTRACT_HEADER, a decimal number); a request without it
 * comes from an agent older than the header: version 1. The controller
 * serves every version from AGENT_CONTRACT_MIN to AGENT_CONTRACT (an older
 * one gets 426), records each node's (GET /v1/nodes/{id}
 * `agent_contract`) and gives a feature that needs a newer agent only to
 * nodes that speak it. Compatibility rules: an agent ignores members of
 * its desired document that it does not know; a member may be added to
 * what agents send only as optional. Bump AGENT_CONTRACT when the agent
 * starts to depend on something the controller did not always do. */
#define AGENT_CONTRACT_HEADER "Fog-Agent-Contract"
#define AGENT_CONTRACT 3
#define AGENT_CONTRACT_MIN 1
#define AGENT_CONTRACT_MAX_VALUE 999 /* beyond: not a version */
/* The first contract whose agents relay WireGuard through the hub
 * (api/relay.h): a pair is put on the relay only when both speak it. */
#define AGENT_CONTRACT_RELAY 2
/* The first contract whose agents take incremental backups and restore
 * their chains: an older agent's VMs get full backups, and a chain is
 * restored only on a node that speaks it. */
#define AGENT_CONTRACT_INCREMENTAL 2
/* The first contract whose agents take a network's VMs as the keyed list
 * AGENT_NET_VMS (below), so a change to one VM of a network reaches each
 * of its nodes as that item alone. */
#define AGENT_CONTRACT_NET_VMS 3

/* A status post refused for some of its usage samples names each, in an
 * array under this member of the problem+json answer: {index, vm, seq,
 * reason}. The agent drops exactly those and sends the rest again. */
#define AGENT_REJECTED_SAMPLES "rejected_samples"

/* A status post's `refused` list: what the node's policy left out of its
 * desired document, as {object, reason}. */
#define AGENT_REFUSED_MAX 64
#define AGENT_REFUSED_OBJECT_MAX 80
#define AGENT_REFUSED_REASON_MAX 300

/* How long a VM's ACPI shutdown may take before the node forces the power
 * off (the VM's `shutdown_timeout_s`, carried in the desired document),
 * and how often the node repeats the ACPI request meanwhile: a guest
 * still booting misses the first one. */
#define VM_SHUTDOWN_TIMEOUT_DEFAULT_S 60
#define VM_SHUTDOWN_TIMEOUT_MAX_S 3600
#define VM_SHUTDOWN_REPEAT_S 5

/* How a VM's status reason begins when the node had to force its power
 * off after the shutdown deadline; the controller records an event. */
#define AGENT_FORCED_OFF_REASON "forced power-off"

/* Well-known host ports a provider permits beyond its range (80, 443,
 * 25565, ...): the agent's --permit-ports, sent under this member at
 * register and in every status post, and enforced by both ends. */
#define AGENT_PERMIT_PORTS "permit_ports"
#define AGENT_PERMIT_PORTS_MAX 64

/* The address the controller saw the agent connect from, in the answer
 * to every status post: the node's public address when it has no
 * --public-ip. */
#define AGENT_OBSERVED_IP "observed_ip"

/* Public address discovery (api/probe.h). When the controller answers
 * address probes, the answer to every status post names its first probe
 * port under AGENT_PROBE_PORT (the port above it answers too), on the
 * address the agent reaches the API at. The node probes from its
 * WireGuard port and reports under AGENT_REACH {nat, mapped_endpoint?}:
 * nat one of probe_nat_name()'s classes, mapped_endpoint the "IP:PORT"
 * the controller saw (required unless nat is "unknown"). */
#define AGENT_PROBE_PORT "probe_port"
#define AGENT_REACH "reachability"
#define AGENT_REACH_NAT "nat"
#define AGENT_REACH_MAPPED "mapped_endpoint"

/* The hub's WireGuard relay (api/relay.h). When the controller relays,
 * the answer to every status post names its UDP port (AGENT_RELAY_PORT,
 * on the address the agent reaches the API at) and a fresh token for the
 * node's hellos (AGENT_RELAY_TOKEN, RELAY_TOKEN_HEX lowercase hex). In the
 * desired document each peer's AGENT_PEER_PATH is "direct" or "relay";
 * for a relayed peer the endpoint is its direct candidate, which the
 * agent tries now and then and keeps once WireGuard shows it works. */
#define AGENT_RELAY_PORT "relay_port"
#define AGENT_RELAY_TOKEN "relay_token"
#define AGENT_PEER_PATH "path"

/* Relayed pairs that found a direct path. The answer to a status post
 * carries AGENT_MESH_PATHS: true when the controller takes the report;
 * then the agent's status posts list, for each peer the desired document
 * relays, under AGENT_MESH_PATHS (at most AGENT_MESH_PATHS_MAX, one per
 * node) {node_id, path: one of AGENT_MESH_PATH_*, since: unix seconds}:
 * the path its
 * packets take now. The controller records them per pair and logs an
 * event when a pair goes direct or back to the relay. */
#define AGENT_MESH_PATHS "mesh_paths"
#define AGENT_MESH_PATHS_MAX 1024
#define AGENT_MESH_PATH_DIRECT "direct"
#define AGENT_MESH_PATH_RELAY_UDP "relay-udp"
#define AGENT_MESH_PATH_RELAY_TCP "relay-tcp"

/* Snapshots. Each desired VM entry lists the snapshots that should exist
 * under AGENT_VM_SNAPSHOTS as {id, name, taken?} (taken: the node
 * reported it once; one it no longer holds is lost, never taken afresh)
 * and, until the node reports it done, AGENT_VM_REVERT {gen,
 * snapshot_id}: a revert is done once per generation. The node
 * reports, per VM, the snapshots it holds under AGENT_VM_SNAPSHOTS as
 * {id, name, consistency, created_at} and the last revert generation it
 * carried out as AGENT_VM_REVERT_GEN. Snapshots are internal qcow2
 * snapshots made through libvirt (the only kind libvirt 9.0 reverts):
 * of a running VM a checkpoint of memory and disk together (the guest
 * resumes at that instant on revert), of a stopped one its disk. */
#define AGENT_VM_SNAPSHOTS "snapshots"
#define AGENT_VM_REVERT "revert"
#define AGENT_VM_REVERT_GEN "revert_gen"
#define VM_SNAPSHOTS_MAX 16
/* Most snapshots one status entry may report (a node may still hold ones
 * being deleted beside those asked for). */
#define AGENT_VM_SNAPSHOTS_HELD_MAX (4 * VM_SNAPSHOTS_MAX)
#define SNAPSHOT_CONSISTENCY_CHECKPOINT "checkpoint"
#define SNAPSHOT_CONSISTENCY_POWERED_OFF "powered-off"

/* The node's GPUs, at register and in status posts: an array (at most
 * AGENT_GPUS_MAX) of {address, id, subsystem, vendor, name, model,
 * functions: [{address, class, id, driver}], iommu_group, group,
 * isolatable, numa_node, cpulist, driver, usable, reason?}, and whether
 * the IOMMU is on at all. */
#define AGENT_GPUS "gpus"
#define AGENT_GPUS_MAX 64
#define AGENT_GPU_FUNCTIONS_MAX 8
#define AGENT_IOMMU "iommu"
/* In the desired document, each VM's assigned GPUs under this member:
 * [{address, functions: [addresses], cpulist, numa_node}] (at most
 * AGENT_GPUS_MAX cards of AGENT_GPU_FUNCTIONS_MAX functions each, NUMA
 * node -1 when unknown, up to AGENT_NUMA_NODE_MAX; cpulist "" when
 * unknown), as the node's inventory reported them. The agent checks each
 * against its own inventory before it passes anything through. */
#define AGENT_VM_GPUS "gpus"
#define AGENT_NUMA_NODE_MAX 65535

/* In the desired document, a VM meant to run but held suspended
 * (virDomainSuspend; sent only when true: an agent that does not know it
 * keeps the VM running), and whether the VM comes back after the node
 * reboots (virDomainSetAutostart while it is meant to run; sent only when
 * false). */
#define AGENT_VM_PAUSED "paused"
#define AGENT_VM_AUTOSTART "autostart"

/* Bounds of the documents both ends read (api/agentmsg.c checks them;
 * the API's own bounds for a VM stay within them). */
/* What the provider keeps for itself (the agent's --reserve-* figures,
 * already left out of the inventory's vcpus, memory_mib and disk_gib):
 * optional inventory members at register and in status posts, bounded
 * like the inventory figures below. */
#define AGENT_INV_RESERVED_VCPUS "reserved_vcpus"
#define AGENT_INV_RESERVED_MEMORY "reserved_memory_mib"
#define AGENT_INV_RESERVED_DISK "reserved_disk_gib"
#define NODE_MAX_VCPUS 1024
#define NODE_MAX_MEMORY_MIB (INT64_C(1) << 24) /* 16 TiB */
#define NODE_MAX_DISK_GIB (INT64_C(1) << 20)   /* 1 PiB */
/* Least memory a node may offer, and least a VM may have (templates). */
#define NODE_MIN_MEMORY_MIB 64
#define VM_MIN_MEMORY_MIB 16
/* Most addresses one VM's report may list. */
#define NODE_MAX_VM_ADDRESSES 64
/* A VM's status reason in bytes, as the node cuts it and the controller
 * takes it. */
#define AGENT_REASON_MAX 1000
/* A VM's console tail in one status post. */
#define AGENT_CONSOLE_TAIL_MAX 65536
/* The largest status post the controller reads (console tails beside the
 * VM list and up to AGENT_SAMPLES_MAX usage samples). */
#define AGENT_STATUS_BODY_MAX (1u << 20)
#define AGENT_SAMPLES_MAX 2000
/* The latest unix second a usage sample may name (year 36812): a bound on
 * the wire, not a clock check (claims ahead of the controller's clock are
 * capped and counted against the node, see controller/accrual.c). */
#define AGENT_SAMPLE_TIME_MAX (INT64_C(1) << 40)
/* Items in one list of a document (VMs, networks, ports, peers, ...). */
#define AGENT_LIST_MAX 100000
/* NICs of one VM, and a VM's user data (as the API takes it). */
#define AGENT_VM_NICS_MAX 64
#define AGENT_USER_DATA_MAX 65536
/* Any other text member of a document. */
#define AGENT_TEXT_MAX 4096

/* A VM's domain as libvirt describes it (virDomainGetXMLDesc without
 * VIR_DOMAIN_XML_SECURE: no secrets), in a status entry under
 * AGENT_VM_DOMAIN_XML (at most AGENT_DOMAIN_XML_MAX bytes) only when it
 * changed since the node's last accepted post, with the interfaces the
 * node read from it under AGENT_VM_INTERFACES: at most AGENT_VM_NICS_MAX
 * of {target, type, source, model, mac} (virsh domiflist's columns;
 * target, source and model may be absent), each text printable and at
 * most AGENT_IFACE_TEXT_MAX bytes. The controller keeps the last one it
 * got and never parses the XML. A post carries new domain XML up to
 * AGENT_DOMAIN_XML_BUDGET bytes in all; the rest waits for the next. */
#define AGENT_VM_DOMAIN_XML "domain_xml"
#define AGENT_VM_INTERFACES "interfaces"
#define AGENT_DOMAIN_XML_MAX 65536
#define AGENT_DOMAIN_XML_BUDGET (256 * 1024)
#define AGENT_IFACE_TEXT_MAX 64

/* Names inside tenant networks. Each desired network entry carries the
 * tenant's DNS label under AGENT_NET_DNS_LABEL (lowercase letters, digits
 * and inner '-', at most AGENT_DNS_LABEL_MAX bytes: see
 * desired_dns_label) and, under AGENT_NET_RECORDS, every VM of that
 * network on any node as {name, address}, sorted by name then address,
 * at most AGENT_NET_RECORDS_MAX. The node's resolver on the network's
 * gateway answers NAME and NAME.LABEL.AGENT_DNS_ZONE; each VM's NIC
 * names that search domain under AGENT_NIC_DNS_SEARCH. */
/* A network's VMs as one keyed list of the document (a node whose agent
 * speaks AGENT_CONTRACT_NET_VMS): under AGENT_NET_VMS, each placed VM of
 * each network the document carries, on any node, as {id, vxlan_id,
 * name, address, address6 (optional), mac, vtep (its node's mesh
 * address; absent when its node has none or is removed)}, id being the
 * network's VXLAN id in eight digits, '/' and the MAC, the list in id
 * order. Its network entries then carry no AGENT_NET_RECORDS and no
 * "macs": the agent makes them from the list (records: the first
 * AGENT_NET_RECORDS_MAX by name then address; macs: those at another
 * VTEP than its own mesh address), and a delta carries the items that
 * changed (api/desired_delta.h). */
#define AGENT_NET_VMS "net_vms"
#define AGENT_NET_VM_ID_FMT "%08lld/%s"

#define AGENT_NET_DNS_LABEL "dns_label"
#define AGENT_NET_RECORDS "records"
#define AGENT_NET_RECORDS_MAX 4096
#define AGENT_NIC_DNS_SEARCH "dns_search"
#define AGENT_DNS_LABEL_MAX 63
#define AGENT_DNS_ZONE "internal"

/* IPv6 next to IPv4 (optional members: a node or hub without them runs
 * IPv4 only). A network entry may carry its ULA /64 under AGENT_NET_CIDR6
 * and gateway (prefix::1) under AGENT_NET_GATEWAY6; a NIC its address
 * (/64) under AGENT_NIC_ADDRESS6 and that gateway under
 * AGENT_NIC_GATEWAY6; a record the VM's IPv6 address under
 * AGENT_REC_ADDRESS6 (AAAA). In a status post, AGENT_PUBLIC_IP6 is the
 * node's global IPv6 address where published ports also answer. */
#define AGENT_NET_CIDR6 "cidr6"
#define AGENT_NET_GATEWAY6 "gateway6"
#define AGENT_NIC_ADDRESS6 "address6"
#define AGENT_NIC_GATEWAY6 "gateway6"
#define AGENT_REC_ADDRESS6 "address6"
#define AGENT_PUBLIC_IP6 "public_ip6"

/* Interactive serial consoles. A tenant attaches with GET
 * /v1/vms/{id}/console/attach and `Upgrade: CONSOLE_UPGRADE_PROTOCOL`;
 * the controller lists the session in the hosting node's desired
 * document under AGENT_CONSOLES as {id, vm_id}, and the node connects
 * out with GET /v1/agent/console/{id} and the same Upgrade, then pumps
 * the domain's serial console through that socket. After the 101 both
 * sockets carry raw bytes; the controller splices them. The node has
 * CONSOLE_JOIN_TIMEOUT_S to join; a session silent both ways for
 * CONSOLE_IDLE_S or older than CONSOLE_TOTAL_S is closed. */
#define CONSOLE_UPGRADE_PROTOCOL "fog-console"
#define AGENT_CONSOLES "consoles"
#define CONSOLE_SESSION_ID_MAX 64
#define CONSOLE_JOIN_TIMEOUT_S 20
#define CONSOLE_IDLE_S 3600
#define CONSOLE_TOTAL_S (24 * 3600)
/* Bytes in flight one way through the controller before it stops reading
 * the sender. */
#define CONSOLE_BUFFER 16384
/* Reading more of a console log than the tail the controller keeps
 * (AGENT_CONSOLE_TAIL_MAX): GET /v1/vms/{id}/console?bytes=N with N up to
 * CONSOLE_LOG_MAX opens a log session, listed to the node as {id, vm_id,
 * log_bytes: N}; the node answers with POST /v1/agent/console/{id}/log,
 * whose body is the last N bytes (at most) of the VM's serial log as
 * console_sanitize leaves them, and the controller hands them to the
 * waiting reader. The node's log itself is kept by virtlogd (2 MiB before
 * it rotates, by default). */
#define AGENT_CONSOLE_LOG_BYTES "log_bytes"
#define CONSOLE_LOG_MAX (1u << 20)
/* Log reads of one VM waiting for its node at once. */
#define CONSOLE_LOG_READERS_MAX 4

/* Backups (migration 029). A desired VM entry, on the VM's own node only,
 * carries AGENT_VM_BACKUP_KEY (the VM's 32-byte key, 64 lowercase hex)
 * whenever it carries AGENT_VM_BACKUPS or AGENT_VM_RESTORE.
 *
 * AGENT_VM_BACKUPS: the backups to take, [{id}] (at most
 * VM_BACKUPS_PENDING_MAX), each listed until the hub committed or failed
 * it. The node seals the VM's disk with the key (nodeagent/backup.c) and
 * uploads the sealed file, resuming where the hub's copy ends:
 *   GET  AGENT_BACKUP_PATH/{id}           {"size": received, "committed"}
 *   PUT  AGENT_BACKUP_PATH/{id}?offset=N  body: the next bytes (at most
 *        AGENT_BACKUP_CHUNK_MAX) -> {"size"}; 409 with {"size"} when N is
 *        not the received size
 *   POST AGENT_BACKUP_PATH/{id}/commit    {"size", "sha256"} -> 200; 422
 *        when the bytes do not hash to it (the upload is discarded and
 *        starts again from 0)
 *   POST AGENT_BACKUP_PATH/{id}/fail      {"error"} -> 204: the backup is
 *        failed with that reason (at most AGENT_BACKUP_ERROR_MAX bytes)
 * Only the node hosting the backup's VM may use these; a committed or
 * failed backup refuses further bytes (409).
 *
 * Incremental backups (migration 039): an entry may name its "parent",
 * the VM's last ready backup taken on this node. When the domain runs and
 * holds a libvirt checkpoint named after that parent, the node takes only
 * the clusters changed since it (libvirt's backup API, push mode, into a
 * qcow2 file without backing); else it takes the whole disk. Either way a
 * running domain gets a checkpoint named after the new backup, and the
 * node keeps no other checkpoint of ours. The commit says which was taken:
 * {"mode": "incremental"} (the parent as offered), or {"mode": "full",
 * "full_reason": why} (at most AGENT_BACKUP_ERROR_MAX bytes); without a
 * mode the backup is full.
 *
 * AGENT_VM_RESTORE: {"backup", "size", "sha256"} in the desired entry of
 * a VM placed from a backup (restore, migration, evacuation). The node
 * fetches GET AGENT_BACKUP_PATH/{backup}/blob (only the node the VM is
 * placed on), checks size and sha256, opens it with the key into the
 * VM's overlay before defining the domain, and never makes a fresh
 * overlay from the image for such a VM; a restore that fails is reported
 * as the VM's state_reason beginning AGENT_RESTORE_FAILED_REASON. An
 * incremental backup also names AGENT_RESTORE_CHAIN, [{"backup", "size",
 * "sha256"}] (at most BACKUP_CHAIN_MAX), the backups under it, its full
 * one first: the node fetches and opens each, stacks them in that order
 * with the restored one on top and flattens them into the overlay. */
#define AGENT_VM_BACKUP_KEY "backup_key"
#define AGENT_VM_BACKUPS "backups"
#define AGENT_VM_RESTORE "restore"
#define AGENT_VM_BACKUP_PARENT "parent"
#define AGENT_RESTORE_CHAIN "chain"
#define BACKUP_MODE_FULL "full"
#define BACKUP_MODE_INCREMENTAL "incremental"
/* The most backups under an incremental one; the hub's full-every knob
 * stays below it. */
#define BACKUP_CHAIN_MAX 32
#define AGENT_BACKUP_PATH "/v1/agent/backups"
#define VM_BACKUPS_PENDING_MAX 4
#define AGENT_BACKUP_CHUNK_MAX (8u << 20)
#define AGENT_BACKUP_ERROR_MAX 300
#define AGENT_RESTORE_FAILED_REASON "restore failed"

/* The benchmark challenge (migration 035, common/benchwork.h). The
 * desired document carries, while one is open for the node,
 * AGENT_BENCH {id, nonce (64 lowercase hex), memory_mib, rounds, lanes,
 * segments, timeout_s}. The node runs it once, in a probe guest of
 * `lanes` vCPUs (on libvirt's test driver: the same worker as a local
 * thread), and posts the worker's answer, {checkpoints: [[hex] * (segments
 * + 1)] * lanes, elapsed_ms}, at most AGENT_BENCH_ANSWER_MAX bytes, to
 * POST AGENT_BENCH_PATH/{id} within timeout_s of its issue. The hub
 * times it itself (issue to answer) and recomputes AGENT_BENCH_PICKS
 * segments it draws afterwards; a wrong, late or second answer counts
 * against the node's reputation.
 *
 * Where the hub holds the probe guest (its --bench-guest), the challenge
 * also names it, AGENT_BENCH_PROBE {kernel: {sha256, size}, initrd:
 * {sha256, size}}, and the node fetches each from AGENT_BENCH_PROBE_PATH/
 * AGENT_BENCH_KERNEL or AGENT_BENCH_INITRD (checked against the digest,
 * cached by it) instead of using a probe of its own. */
#define AGENT_BENCH_PROBE "probe"
#define AGENT_BENCH_PROBE_PATH "/v1/agent/probe"
#define AGENT_BENCH_KERNEL "vmlinuz"
#define AGENT_BENCH_INITRD "initrd.gz"
/* Largest probe file either end accepts. */
#define AGENT_BENCH_PROBE_MAX (INT64_C(256) << 20)
#define AGENT_BENCH "benchmark"
#define AGENT_BENCH_PATH "/v1/agent/benchmarks"
#define AGENT_BENCH_ANSWER_MAX (512u << 10) /* 16 lanes of 257: ~270 KiB */
#define AGENT_BENCH_TIMEOUT_MAX_S 3600
#define AGENT_BENCH_PICKS 4
/* Health checks (api/healthcheck.h, migration 033). A desired VM entry
 * lists its checks under AGENT_VM_HEALTH_CHECKS (at most HC_PER_VM_MAX,
 * each hc_spec_to_json with its id); the node probes the VM's first
 * address from the host while the domain runs, applies rise and fall,
 * and reports per VM under AGENT_VM_HEALTH [{id, state, output?}] (state
 * healthy or unhealthy once a threshold is met, else unknown; output at
 * most HC_OUTPUT_MAX bytes: what the last probe saw). The controller
 * keeps the state and its time, records an event on each change and
 * takes the restart action. */
#define AGENT_VM_HEALTH_CHECKS "health_checks"
#define AGENT_VM_HEALTH "health"
