/* Unit tests for netfabric/wg_genl: the WG_CMD_SET_DEVICE messages the
 * kernel backend sends, checked byte by byte and parsed back, since the
 * kernel module is not there to accept them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "netfabric/wg_genl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>

#define FAMILY 0x1d

static void key_fill(uint8_t k[WGKEY_LEN], uint8_t seed)
{
    for (int i = 0; i < WGKEY_LEN; i++)
        k[i] = (uint8_t)(seed + i);
}

static void add_ip(struct wg_peer *p, const char *text)
{
    assert_int_equal(wg_allowed_ip_parse(text, wg_peer_add_allowed_ip(p)), 0);
}

/* A device with a private key, port, replace-peers and two peers. */
static void sample_device(struct wg_device *d)
{
    memset(d, 0, sizeof(*d));
    strcpy(d->name, "fogwg0");
    d->has_private_key = true;
    key_fill(d->private_key, 0x40);
    d->has_listen_port = true;
    d->listen_port = 51820;
    d->replace_peers = true;
    struct wg_peer *p = wg_device_add_peer(d);
    key_fill(p->public_key, 0x10);
    assert_int_equal(wg_endpoint_parse("192.0.2.7:51821", &p->endpoint), 0);
    p->keepalive = 25;
    p->replace_allowed_ips = true;
    add_ip(p, "100.96.0.2/32");
    add_ip(p, "fd00:1::/64");
    p = wg_device_add_peer(d);
    key_fill(p->public_key, 0x20);
    assert_int_equal(wg_endpoint_parse("[2001:db8::1]:4000", &p->endpoint), 0);
    p->replace_allowed_ips = true;
    add_ip(p, "100.96.0.3/32");
}

static void assert_devices_equal(const struct wg_device *a,
                                 const struct wg_device *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->has_private_key, b->has_private_key);
    if (a->has_private_key)
        assert_memory_equal(a->private_key, b->private_key, WGKEY_LEN);
    assert_int_equal(a->has_listen_port, b->has_listen_port);
    assert_int_equal(a->listen_port, b->listen_port);
    assert_int_equal(a->replace_peers, b->replace_peers);
    assert_int_equal(a->n_peers, b->n_peers);
    for (size_t i = 0; i < a->n_peers; i++) {
        const struct wg_peer *p = &a->peers[i], *q = &b->peers[i];
        assert_memory_equal(p->public_key, q->public_key, WGKEY_LEN);
        assert_int_equal(p->remove, q->remove);
        assert_int_equal(p->replace_allowed_ips, q->replace_allowed_ips);
        assert_int_equal(p->keepalive, q->keepalive);
        assert_int_equal(p->endpoint.sa.sa_family, q->endpoint.sa.sa_family);
        if (p->endpoint.sa.sa_family == AF_INET)
            assert_memory_equal(&p->endpoint.in, &q->endpoint.in,
                                sizeof(p->endpoint.in));
        if (p->endpoint.sa.sa_family == AF_INET6)
            assert_memory_equal(&p->endpoint.in6, &q->endpoint.in6,
                                sizeof(p->endpoint.in6));
        assert_int_equal(p->n_allowed_ips, q->n_allowed_ips);
        for (size_t k = 0; k < p->n_allowed_ips; k++) {
            assert_int_equal(p->allowed_ips[k].family, q->allowed_ips[k].family);
            assert_int_equal(p->allowed_ips[k].cidr, q->allowed_ips[k].cidr);
            assert_memory_equal(&p->allowed_ips[k].addr, &q->allowed_ips[k].addr,
                                p->allowed_ips[k].family == AF_INET ? 4 : 16);
        }
    }
}

/* Raw type field of an attribute, flags included. */
static uint16_t raw_type(const struct nlattr *a) { return a->nla_type; }

static struct nlattr *find_attr(struct nlattr *head, int len, int type)
{
    struct nlattr *a;
    int rem;
    nla_for_each_attr(a, head, len, rem)
        if (nla_type(a) == type)
            return a;
    return NULL;
}

static void set_message_header_and_attributes_are_exact(void **state)
{
    struct wg_device d;
    sample_device(&d);
    struct nl_msg **msgs;
    size_t n;
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 4096, &msgs, &n), 0);
    assert_int_equal(n, 1);
    struct nlmsghdr *nlh = nlmsg_hdr(msgs[0]);
    assert_int_equal(nlh->nlmsg_type, FAMILY);
    assert_true(nlh->nlmsg_flags & NLM_F_REQUEST);
    assert_true(nlh->nlmsg_flags & NLM_F_ACK);
    struct genlmsghdr *g = nlmsg_data(nlh);
    assert_int_equal(g->cmd, WG_CMD_SET_DEVICE);
    assert_int_equal(g->version, WG_GENL_VERSION);

    struct nlattr *head = genlmsg_attrdata(g, 0);
    int len = genlmsg_attrlen(g, 0);
    struct nlattr *a = find_attr(head, len, WGDEVICE_A_IFNAME);
    assert_non_null(a);
    assert_string_equal(nla_get_string(a), "fogwg0");
    a = find_attr(head, len, WGDEVICE_A_PRIVATE_KEY);
    assert_non_null(a);
    assert_int_equal(nla_len(a), 32);
    assert_memory_equal(nla_data(a), d.private_key, 32);
    a = find_attr(head, len, WGDEVICE_A_LISTEN_PORT);
    assert_non_null(a);
    assert_int_equal(nla_len(a), 2);
    assert_int_equal(nla_get_u16(a), 51820); /* host order, as the kernel wants */
    a = find_attr(head, len, WGDEVICE_A_FLAGS);
    assert_non_null(a);
    assert_int_equal(nla_get_u32(a), WGDEVICE_F_REPLACE_PEERS);

    struct nlattr *peers = find_attr(head, len, WGDEVICE_A_PEERS);
    assert_non_null(peers);
    assert_true(raw_type(peers) & NLA_F_NESTED);
    struct nlattr *peer;
    int rem, count = 0;
    nla_for_each_nested(peer, peers, rem) {
        assert_true(raw_type(peer) & NLA_F_NESTED); /* the kernel insists */
        struct nlattr *pk = find_attr(nla_data(peer), nla_len(peer),
                                      WGPEER_A_PUBLIC_KEY);
        assert_non_null(pk);
        assert_memory_equal(nla_data(pk), d.peers[count].public_key, 32);
        struct nlattr *ep = find_attr(nla_data(peer), nla_len(peer),
                                      WGPEER_A_ENDPOINT);
        assert_non_null(ep);
        if (count == 0) {
            assert_int_equal(nla_len(ep), sizeof(struct sockaddr_in));
            const struct sockaddr_in *sin = nla_data(ep);
            assert_int_equal(sin->sin_family, AF_INET);
            assert_int_equal(sin->sin_port, htons(51821));
            assert_int_equal(sin->sin_addr.s_addr, inet_addr("192.0.2.7"));
            struct nlattr *ka = find_attr(nla_data(peer), nla_len(peer),
                                          WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL);
            assert_non_null(ka);
            assert_int_equal(nla_get_u16(ka), 25);
        } else {
            assert_int_equal(nla_len(ep), sizeof(struct sockaddr_in6));
        }
        struct nlattr *fl = find_attr(nla_data(peer), nla_len(peer),
                                      WGPEER_A_FLAGS);
        assert_non_null(fl);
        assert_int_equal(nla_get_u32(fl), WGPEER_F_REPLACE_ALLOWEDIPS);
        struct nlattr *ips = find_attr(nla_data(peer), nla_len(peer),
                                       WGPEER_A_ALLOWEDIPS);
        assert_non_null(ips);
        assert_true(raw_type(ips) & NLA_F_NESTED);
        struct nlattr *ip;
        int rem2, k = 0;
        nla_for_each_nested(ip, ips, rem2) {
            assert_true(raw_type(ip) & NLA_F_NESTED);
            struct nlattr *fam = find_attr(nla_data(ip), nla_len(ip),
                                           WGALLOWEDIP_A_FAMILY);
            struct nlattr *addr = find_attr(nla_data(ip), nla_len(ip),
                                            WGALLOWEDIP_A_IPADDR);
            struct nlattr *mask = find_attr(nla_data(ip), nla_len(ip),
                                            WGALLOWEDIP_A_CIDR_MASK);
            assert_non_null(fam);
            assert_non_null(addr);
            assert_non_null(mask);
            if (count == 0 && k == 0) {
                assert_int_equal(nla_get_u16(fam), AF_INET);
                assert_int_equal(nla_len(addr), 4);
                const uint8_t want[4] = { 100, 96, 0, 2 };
                assert_memory_equal(nla_data(addr), want, 4);
                assert_int_equal(nla_get_u8(mask), 32);
            }
            if (count == 0 && k == 1) {
                assert_int_equal(nla_get_u16(fam), AF_INET6);
                assert_int_equal(nla_len(addr), 16);
                assert_int_equal(nla_get_u8(mask), 64);
            }
            k++;
        }
        assert_int_equal(k, (int)d.peers[count].n_allowed_ips);
        count++;
    }
    assert_int_equal(count, 2);

    /* And the whole message parses back to the same device. */
    struct wg_device back = { 0 };
    assert_int_equal(wg_genl_parse(nlh, &back), 0);
    assert_devices_equal(&d, &back);
    wg_device_clear(&back);
    wg_genl_msgs_free(msgs, n);
    wg_device_clear(&d);
}

static void large_config_is_split_and_merges_back(void **state)
{
    struct wg_device d;
    sample_device(&d);
    struct wg_peer *big = wg_device_add_peer(&d);
    key_fill(big->public_key, 0x70);
    big->replace_allowed_ips = true;
    big->keepalive = 25;
    for (int i = 0; i < 200; i++) {
        char t[32];
        snprintf(t, sizeof(t), "10.%d.%d.0/24", i / 256, i % 256);
        add_ip(big, t);
    }
    struct wg_peer *last = wg_device_add_peer(&d);
    key_fill(last->public_key, 0x90);
    add_ip(last, "100.96.0.9/32");
    big = &d.peers[2]; /* the add may have moved the array */

    struct nl_msg **msgs;
    size_t n;
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 1024, &msgs, &n), 0);
    assert_true(n >= 6);
    struct wg_device back = { 0 };
    for (size_t i = 0; i < n; i++) {
        struct nlmsghdr *nlh = nlmsg_hdr(msgs[i]);
        assert_true(nlh->nlmsg_len <= 1024);
        struct genlmsghdr *g = nlmsg_data(nlh);
        struct nlattr *head = genlmsg_attrdata(g, 0);
        int len = genlmsg_attrlen(g, 0);
        assert_non_null(find_attr(head, len, WGDEVICE_A_IFNAME));
        /* Device attributes and replace-peers only in the first. */
        if (i == 0) {
            assert_non_null(find_attr(head, len, WGDEVICE_A_PRIVATE_KEY));
            assert_non_null(find_attr(head, len, WGDEVICE_A_FLAGS));
        } else {
            assert_null(find_attr(head, len, WGDEVICE_A_PRIVATE_KEY));
            assert_null(find_attr(head, len, WGDEVICE_A_FLAGS));
            assert_null(find_attr(head, len, WGDEVICE_A_LISTEN_PORT));
            /* A continued peer repeats only its key and more IPs: no
             * flags, so replace-allowed-IPs cannot wipe the first part. */
            struct nlattr *peers = find_attr(head, len, WGDEVICE_A_PEERS);
            assert_non_null(peers);
            struct nlattr *first_peer = nla_data(peers);
            struct nlattr *pk = find_attr(nla_data(first_peer),
                                          nla_len(first_peer),
                                          WGPEER_A_PUBLIC_KEY);
            if (memcmp(nla_data(pk), big->public_key, 32) == 0 && i > 1) {
                assert_null(find_attr(nla_data(first_peer), nla_len(first_peer),
                                      WGPEER_A_FLAGS));
                assert_null(find_attr(nla_data(first_peer), nla_len(first_peer),
                                      WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL));
            }
        }
        assert_int_equal(wg_genl_parse(nlh, &back), 0);
    }
    assert_devices_equal(&d, &back);
    assert_int_equal(back.peers[2].n_allowed_ips, 200);
    wg_device_clear(&back);
    wg_genl_msgs_free(msgs, n);
    wg_device_clear(&d);
}

static void removing_a_peer_sends_only_its_key_and_flag(void **state)
{
    struct wg_device d = { 0 };
    strcpy(d.name, "fogwg0");
    struct wg_peer *p = wg_device_add_peer(&d);
    key_fill(p->public_key, 0x33);
    p->remove = true;
    add_ip(p, "100.96.0.5/32"); /* ignored for a removal */
    struct nl_msg **msgs;
    size_t n;
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 4096, &msgs, &n), 0);
    assert_int_equal(n, 1);
    struct genlmsghdr *g = nlmsg_data(nlmsg_hdr(msgs[0]));
    struct nlattr *head = genlmsg_attrdata(g, 0);
    int len = genlmsg_attrlen(g, 0);
    assert_null(find_attr(head, len, WGDEVICE_A_PRIVATE_KEY));
    assert_null(find_attr(head, len, WGDEVICE_A_FLAGS));
    struct nlattr *peer = nla_data(find_attr(head, len, WGDEVICE_A_PEERS));
    struct nlattr *fl = find_attr(nla_data(peer), nla_len(peer), WGPEER_A_FLAGS);
    assert_non_null(fl);
    assert_int_equal(nla_get_u32(fl), WGPEER_F_REMOVE_ME);
    assert_null(find_attr(nla_data(peer), nla_len(peer), WGPEER_A_ALLOWEDIPS));
    assert_null(find_attr(nla_data(peer), nla_len(peer), WGPEER_A_ENDPOINT));
    wg_genl_msgs_free(msgs, n);
    wg_device_clear(&d);
}

static void bad_configs_are_refused_before_building(void **state)
{
    struct wg_device d;
    struct nl_msg **msgs = NULL;
    size_t n = 0;
    sample_device(&d);
    strcpy(d.name, "a/b");
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 4096, &msgs, &n), -EINVAL);
    strcpy(d.name, "fogwg0");
    memcpy(d.peers[1].public_key, d.peers[0].public_key, WGKEY_LEN);
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 4096, &msgs, &n), -EINVAL);
    memset(d.peers[1].public_key, 0, WGKEY_LEN);
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 4096, &msgs, &n), -EINVAL);
    key_fill(d.peers[1].public_key, 0x20);
    /* A peer header that cannot fit in a message at all. */
    assert_int_equal(wg_genl_build_set(&d, FAMILY, 120, &msgs, &n), -EMSGSIZE);
    wg_device_clear(&d);

    struct wg_allowed_ip a;
    assert_int_equal(wg_allowed_ip_parse("10.0.0.1/24", &a), -EINVAL);
    assert_int_equal(wg_allowed_ip_parse("10.0.0.0/33", &a), -EINVAL);
    assert_int_equal(wg_allowed_ip_parse("10.0.0.0", &a), -EINVAL);
    union wg_endpoint e;
    assert_int_equal(wg_endpoint_parse("10.0.0.1", &e), -EINVAL);
    assert_int_equal(wg_endpoint_parse("10.0.0.1:0", &e), -EINVAL);
    assert_int_equal(wg_endpoint_parse("host.example:51820", &e), -EINVAL);
    assert_int_equal(wg_endpoint_parse("[::1:51820", &e), -EINVAL);
}

static void parse_rejects_malformed_allowed_ips(void **state)
{
    struct nl_msg *m = nlmsg_alloc();
    assert_non_null(genlmsg_put(m, 1, 1, FAMILY, 0, 0, WG_CMD_GET_DEVICE, 1));
    nla_put_string(m, WGDEVICE_A_IFNAME, "fogwg0");
    struct nlattr *peers = nla_nest_start(m, WGDEVICE_A_PEERS | NLA_F_NESTED);
    struct nlattr *p = nla_nest_start(m, NLA_F_NESTED);
    uint8_t key[32];
    key_fill(key, 1);
    nla_put(m, WGPEER_A_PUBLIC_KEY, 32, key);
    struct nlattr *ips = nla_nest_start(m, WGPEER_A_ALLOWEDIPS | NLA_F_NESTED);
    struct nlattr *ip = nla_nest_start(m, NLA_F_NESTED);
    uint8_t addr[16] = { 0 };
    nla_put_u16(m, WGALLOWEDIP_A_FAMILY, AF_INET);
    nla_put(m, WGALLOWEDIP_A_IPADDR, 16, addr); /* IPv4 with 16 bytes */
    nla_put_u8(m, WGALLOWEDIP_A_CIDR_MASK, 24);
    nla_nest_end(m, ip);
    nla_nest_end(m, ips);
    nla_nest_end(m, p);
    nla_nest_end(m, peers);
    struct wg_device d = { 0 };
    assert_int_equal(wg_genl_parse(nlmsg_hdr(m), &d), -EBADMSG);
    wg_device_clear(&d);
    nlmsg_free(m);
}

static void dump_parts_of_one_peer_merge(void **state)
{
    /* The kernel repeats a big peer with only its key and allowed IPs. */
    struct wg_device d = { 0 };
    uint8_t key[32];
    key_fill(key, 9);
    for (int part = 0; part < 2; part++) {
        struct nl_msg *m = nlmsg_alloc();
        genlmsg_put(m, 1, 1, FAMILY, 0, NLM_F_MULTI, WG_CMD_GET_DEVICE, 1);
        nla_put_string(m, WGDEVICE_A_IFNAME, "fogwg0");
        struct nlattr *peers = nla_nest_start(m, WGDEVICE_A_PEERS | NLA_F_NESTED);
        struct nlattr *p = nla_nest_start(m, NLA_F_NESTED);
        nla_put(m, WGPEER_A_PUBLIC_KEY, 32, key);
        if (part == 0)
            nla_put_u64(m, WGPEER_A_RX_BYTES, 1234);
        struct nlattr *ips = nla_nest_start(m, WGPEER_A_ALLOWEDIPS | NLA_F_NESTED);
        struct nlattr *ip = nla_nest_start(m, NLA_F_NESTED);
        uint8_t addr[4] = { 10, 0, (uint8_t)part, 0 };
        nla_put_u16(m, WGALLOWEDIP_A_FAMILY, AF_INET);
        nla_put(m, WGALLOWEDIP_A_IPADDR, 4, addr);
        nla_put_u8(m, WGALLOWEDIP_A_CIDR_MASK, 24);
        nla_nest_end(m, ip);
        nla_nest_end(m, ips);
        nla_nest_end(m, p);
        nla_nest_end(m, peers);
        assert_int_equal(wg_genl_parse(nlmsg_hdr(m), &d), 0);
        nlmsg_free(m);
    }
    assert_int_equal(d.n_peers, 1);
    assert_int_equal(d.peers[0].n_allowed_ips, 2);
    assert_int_equal(d.peers[0].rx_bytes, 1234);
    assert_int_equal(((uint8_t *)&d.peers[0].allowed_ips[1].addr)[2], 1);
    wg_device_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_message_header_and_attributes_are_exact),
        cmocka_unit_test(large_config_is_split_and_merges_back),
        cmocka_unit_test(removing_a_peer_sends_only_its_key_and_flag),
        cmocka_unit_test(bad_configs_are_refused_before_building),
        cmocka_unit_test(parse_rejects_malformed_allowed_ips),
        cmocka_unit_test(dump_parts_of_one_peer_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
