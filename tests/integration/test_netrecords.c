/* A tenant network's DNS records as the controller holds them
 * (controller/netrecords.c): read whole once, then brought forward through
 * the store's DNS log by the VMs each change names, always equal to what
 * the store says; a set far behind the log is read whole; nothing read
 * inside a write transaction is kept past it. On sqlite, and on
 * PostgreSQL under FOG_TEST_DATABASE=postgresql. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/netrecords.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <string.h>

#define ok(x) assert_int_equal((x), 0)
#define exec_ok(...) assert_true(store_exec(__VA_ARGS__) >= 0)

struct fixture {
    char *dir;
    struct store *s;
    char net[UUID_STR_LEN + 1];
    char *cidr6;
    int next; /* VMs made */
};

static struct fixture *fixture_new(void)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->dir = tu_tempdir("netrecords");
    _cleanup_free_ char *db = tu_new_store_address(f->dir);
    ok(store_open(db, &f->s));
    exec_ok(f->s, "INSERT INTO accounts (id, name, role, created_at) VALUES "
                  "('acc', 'acme', 'tenant', 1), ('prov', 'miner', "
                  "'provider', 1)", "");
    /* n1 and n2 in the mesh, n3 not yet. */
    exec_ok(f->s, "INSERT INTO nodes (id, name, account_id, cred_id, "
                  "cred_salt, cred_hash, approved, kvm, arch, vcpus, "
                  "memory_mib, disk_gib, revision, created_at, mesh_ip) "
                  "VALUES ('n1', 'rig1', 'prov', 'fogn_1', '00', '00', 1, 1, "
                  "'x86_64', 8, 8192, 100, 1, 1, '100.96.0.1'), ('n2', "
                  "'rig2', 'prov', 'fogn_2', '00', '00', 1, 1, 'x86_64', 8, "
                  "8192, 100, 1, 1, '100.96.0.2'), ('n3', 'rig3', 'prov', "
                  "'fogn_3', '00', '00', 1, 1, 'x86_64', 8, 8192, 100, 1, 1, "
                  "NULL)", "");
    ok(store_tx_begin(f->s));
    ok(network_insert(f->s, "acc", "web", "10.9.0.0/16", false, f->net));
    ok(store_tx_commit(f->s));
    json_auto_t *row = NULL;
    ok(store_query_one(f->s, &row, "SELECT cidr6 FROM networks WHERE id = $1",
                       "s", f->net));
    f->cidr6 = json_str(row, "cidr6") ? xstrdup(json_str(row, "cidr6")) : NULL;
    return f;
}

static void fixture_free(struct fixture *f)
{
    store_close(f->s);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f->cidr6);
    free(f);
}

/* A VM named `name` in the network, placed on `node` (NULL: not
 * placed), its change told; its id in id. */
static void vm_on(struct fixture *f, const char *name, const char *node,
                  char id[UUID_STR_LEN + 1])
{
    uuid_generate_str(id);
    int i = f->next++;
    _cleanup_free_ char *addr = xasprintf("10.9.%d.%d", (i + 2) / 250,
                                          (i + 2) % 250 + 2);
    _cleanup_free_ char *mac = xasprintf("02:fb:00:00:%02x:%02x",
                                         (i >> 8) & 0xff, i & 0xff);
    ok(store_tx_begin(f->s));
    exec_ok(f->s, "INSERT INTO vms (id, account_id, name, vcpus, memory_mib, "
                  "disk_gib, image, desired_state, state, addresses, node_id, "
                  "created_at, updated_at) VALUES ($1, 'acc', $2, 1, 512, 5, "
                  "'debian-12', 'running', 'running', '[]', $3, 1, 1)", "sss",
            id, name, node);
    exec_ok(f->s, "INSERT INTO vm_nics (vm_id, idx, network_id, mac, address) "
                  "VALUES ($1, 0, $2, $3, $4)", "ssss", id, f->net, mac, addr);
    if (node)
        ok(netrecords_vm_changed(f->s, id));
    ok(store_tx_commit(f->s));
}

static void vm_add(struct fixture *f, const char *name, bool placed,
                   char id[UUID_STR_LEN + 1])
{
    vm_on(f, name, placed ? "n1" : NULL, id);
}

/* The VM deleted as the controller does: told, then its NICs gone. */
static void vm_delete(struct fixture *f, const char *id)
{
    ok(store_tx_begin(f->s));
    exec_ok(f->s, "UPDATE vms SET deleted_at = 2 WHERE id = $1", "s", id);
    ok(netrecords_vm_changed(f->s, id));
    exec_ok(f->s, "DELETE FROM vm_nics WHERE vm_id = $1", "s", id);
    ok(store_tx_commit(f->s));
}

static int64_t dns_rev(struct fixture *f)
{
    return store_query_int(f->s, -1, "SELECT dns_rev FROM networks WHERE id = "
                           "$1", "s", f->net);
}

/* The records now, in a read transaction as a build reads them (a whole
 * document's build with `fresh`). */
static struct netrec_set *get_as(struct fixture *f, bool fresh)
{
    ok(store_tx_begin_read(f->s));
    int64_t rev = dns_rev(f);
    struct netrec_set *set = NULL;
    ok(netrecords_get(f->s, f->net, rev, f->cidr6, "10.9.0.0/16", fresh,
                      &set));
    store_tx_rollback(f->s);
    assert_int_equal(set->rev, rev);
    return set;
}

static struct netrec_set *get(struct fixture *f)
{
    return get_as(f, false);
}

/* set must be exactly what the store says: every placed, undeleted VM's
 * name and address, in (name, address) order, with its IPv6 address. */
static void assert_is_store(struct fixture *f, const struct netrec_set *set)
{
    json_auto_t *rows = NULL;
    ok(store_query(f->s, &rows, "SELECT c.vm_id, v.name, c.address FROM "
                   "vm_nics c JOIN vms v ON v.id = c.vm_id WHERE "
                   "c.network_id = $1 AND v.deleted_at IS NULL AND v.node_id "
                   "IS NOT NULL", "s", f->net));
    assert_int_equal(set->n, json_array_size(rows));
    for (size_t i = 0; i < set->n; i++) {
        const struct netrec *r = set->recs[i];
        if (i > 0) {
            const struct netrec *p = set->recs[i - 1];
            int c = strcmp(p->name, r->name);
            assert_true(c < 0 || (c == 0 && strcmp(p->address, r->address) < 0));
        }
        bool found = false;
        size_t k;
        json_t *row;
        json_array_foreach(rows, k, row)
            if (streq(json_str(row, "vm_id"), r->vm_id) &&
                streq(json_str(row, "name"), r->name) &&
                streq(json_str(row, "address"), r->address))
                found = true;
        if (!found)
            fail_msg("record %s %s (vm %s) is not in the store", r->name,
                     r->address, r->vm_id);
        if (f->cidr6) {
            assert_non_null(r->address6);
            _cleanup_free_ char *want = netalloc_address6(f->cidr6,
                                                          "10.9.0.0/16",
                                                          r->address);
            assert_string_equal(r->address6, want);
        }
    }
}

static void records_follow_each_change_through_the_log(void **state)
{
    (void)state;
    struct fixture *f = fixture_new();
    char id[8][UUID_STR_LEN + 1], pending[UUID_STR_LEN + 1];
    vm_add(f, "web-b", true, id[0]);
    vm_add(f, "web-a", true, id[1]);
    vm_add(f, "db", true, id[2]);
    vm_add(f, "later", false, pending); /* not placed: no name yet */
    struct netrec_set *s1 = get(f);
    assert_int_equal(s1->n, 3);
    assert_string_equal(s1->recs[0]->name, "db");
    assert_string_equal(s1->recs[1]->name, "web-a");
    assert_is_store(f, s1);
    /* Asked again at the same revision: the set held, not a read. */
    struct netrec_set *again = get(f);
    assert_ptr_equal(again, s1);
    netrec_set_unref(again);

    /* Placed: the pending VM is named, brought forward from s1. */
    exec_ok(f->s, "UPDATE vms SET node_id = 'n1' WHERE id = $1", "s",
            pending);
    ok(netrecords_vm_changed(f->s, pending));
    struct netrec_set *s2 = get(f);
    assert_int_equal(s2->n, 4);
    assert_is_store(f, s2);
    /* The records s1 and s2 share are shared, not copied. */
    assert_ptr_equal(s2->recs[0], s1->recs[0]);
    netrec_set_unref(s1);

    /* Deleted, then a new VM with its name: the old address goes. */
    vm_delete(f, id[1]);
    vm_add(f, "web-a", true, id[3]);
    vm_add(f, "web-c", true, id[4]);
    struct netrec_set *s3 = get(f);
    assert_int_equal(s3->n, 5);
    assert_is_store(f, s3);
    for (size_t i = 0; i < s3->n; i++)
        assert_string_not_equal(s3->recs[i]->vm_id, id[1]);
    netrec_set_unref(s2);

    /* Several changes between two reads. */
    vm_delete(f, id[0]);
    vm_delete(f, id[2]);
    vm_add(f, "cache", true, id[5]);
    struct netrec_set *s4 = get(f);
    assert_int_equal(s4->n, 4);
    assert_is_store(f, s4);
    netrec_set_unref(s3);
    netrec_set_unref(s4);
    fixture_free(f);
}

static void a_set_far_behind_the_log_is_read_whole(void **state)
{
    (void)state;
    struct fixture *f = fixture_new();
    char id[UUID_STR_LEN + 1], other[UUID_STR_LEN + 1];
    vm_add(f, "a", true, id);
    struct netrec_set *s1 = get(f);
    assert_int_equal(s1->n, 1);
    /* More changes than the log keeps, the last of them a new VM. */
    ok(store_tx_begin(f->s));
    for (int i = 0; i < 1100; i++)
        ok(netrecords_vm_changed(f->s, id));
    ok(store_tx_commit(f->s));
    vm_add(f, "b", true, other);
    /* Cut to the last 1,024 revisions at every 64th: never more kept. */
    int64_t kept = store_query_int(f->s, -1, "SELECT COUNT(*) FROM net_dns_log "
                                   "WHERE network_id = $1", "s", f->net);
    assert_true(kept >= 1024 && kept <= 1024 + 64);
    struct netrec_set *s2 = get(f);
    assert_int_equal(s2->n, 2);
    assert_is_store(f, s2);
    netrec_set_unref(s1);
    netrec_set_unref(s2);
    fixture_free(f);
}

static void nothing_read_in_a_write_transaction_is_kept(void **state)
{
    (void)state;
    struct fixture *f = fixture_new();
    char id[UUID_STR_LEN + 1], gone[UUID_STR_LEN + 1], kept[UUID_STR_LEN + 1];
    vm_add(f, "a", true, id);
    netrec_set_unref(get(f));
    /* A change read inside its own transaction, then rolled back. */
    ok(store_tx_begin(f->s));
    vm_add(f, "rolled-back", true, gone);
    struct netrec_set *inside = get(f);
    assert_int_equal(inside->n, 2);
    int64_t rev = inside->rev;
    netrec_set_unref(inside);
    store_tx_rollback(f->s);
    /* Another change commits at the same revision: its set is read, not
     * the rolled-back one's. */
    vm_add(f, "committed", true, kept);
    assert_int_equal(dns_rev(f), rev);
    struct netrec_set *after = get(f);
    assert_int_equal(after->n, 2);
    assert_is_store(f, after);
    assert_string_equal(after->recs[1]->name, "committed");
    netrec_set_unref(after);
    fixture_free(f);
}

/* A change no one told (an operator's SQL, a controller of another
 * version) is healed by the next whole document's build: it reads the
 * network whole and what it read replaces what was held. */
static void a_whole_build_heals_a_change_not_told(void **state)
{
    (void)state;
    struct fixture *f = fixture_new();
    char a[UUID_STR_LEN + 1], b[UUID_STR_LEN + 1];
    vm_add(f, "a", true, a);
    vm_add(f, "b", true, b);
    struct netrec_set *held = get(f);
    assert_int_equal(held->n, 2);
    exec_ok(f->s, "UPDATE vms SET deleted_at = 3 WHERE id = $1", "s", b);
    struct netrec_set *whole = get_as(f, true);
    assert_int_equal(whole->rev, held->rev);
    assert_int_equal(whole->n, 1);
    assert_is_store(f, whole);
    /* Held from now on, at the same revision. */
    struct netrec_set *next = get(f);
    assert_ptr_equal(next, whole);
    netrec_set_unref(next);
    netrec_set_unref(whole);
    netrec_set_unref(held);
    fixture_free(f);
}

/* node's view of the others: "VTEP MAC ..." of w's MACs, its VTEPs. */
/* What netrecords_texts() makes for node: the same form as remote_of(),
 * its MACs from their JSON text; *ret_names the records' names. */
static char *texts_of(struct fixture *f, struct netrec_set *set,
                      const char *node, char **ret_names)
{
    struct am_network w = { 0 };
    char *macs = NULL, *records = NULL;
    ok(store_tx_begin_read(f->s));
    ok(netrecords_texts(f->s, set, node, &w, &macs, &records));
    store_tx_rollback(f->s);
    json_auto_t *m = json_loads(macs, 0, NULL);
    json_auto_t *r = records ? json_loads(records, 0, NULL) : json_array();
    assert_true(json_is_array(m));
    assert_true(json_is_array(r));
    struct buf b = BUF_INIT, names = BUF_INIT;
    size_t i;
    json_t *v;
    for (i = 0; i < w.n_vteps; i++) {
        buf_printf(&b, "%s%s", i ? "," : "", w.vteps[i]);
        free(w.vteps[i]);
    }
    json_array_foreach(m, i, v)
        buf_printf(&b, " %s=%s", json_str(v, "vtep"), json_str(v, "mac"));
    json_array_foreach(r, i, v)
        buf_printf(&names, "%s%s", i ? "," : "", json_str(v, "name"));
    free(w.vteps);
    free(macs);
    free(records);
    *ret_names = buf_steal(&names);
    return buf_steal(&b);
}

/* The other nodes' VTEPs and MACs for node, as "VTEPS VTEP=MAC ...":
 * netrecords_remote()'s, which netrecords_texts() must give too. */
static char *remote_of(struct fixture *f, struct netrec_set *set,
                       const char *node)
{
    struct am_network w = { 0 };
    ok(store_tx_begin_read(f->s));
    ok(netrecords_remote(f->s, set, node, &w));
    store_tx_rollback(f->s);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < w.n_vteps; i++)
        buf_printf(&b, "%s%s", i ? "," : "", w.vteps[i]);
    for (size_t i = 0; i < w.n_macs; i++) {
        buf_printf(&b, " %s=%s", w.macs[i].vtep, w.macs[i].mac);
        free(w.macs[i].mac);
        free(w.macs[i].vtep);
    }
    for (size_t i = 0; i < w.n_vteps; i++)
        free(w.vteps[i]);
    free(w.vteps);
    free(w.macs);
    _cleanup_free_ char *names = NULL;
    _cleanup_free_ char *text = texts_of(f, set, node, &names);
    assert_string_equal(text, b.data ? b.data : "");
    /* Every node's names: all the network's, in (name, address) order. */
    struct buf want = BUF_INIT;
    for (size_t i = 0; i < set->n; i++)
        buf_printf(&want, "%s%s", i ? "," : "", set->recs[i]->name);
    assert_string_equal(names, want.data ? want.data : "");
    buf_free(&want);
    return buf_steal(&b);
}

/* The other nodes' MACs (and the network's nodes) from its records. */
static void each_node_sees_the_other_nodes_macs(void **state)
{
    (void)state;
    struct fixture *f = fixture_new();
    char id[5][UUID_STR_LEN + 1];
    vm_on(f, "a", "n1", id[0]); /* MAC 02:fb:00:00:00:00 */
    vm_on(f, "b", "n2", id[1]); /* ...:01 */
    vm_on(f, "c", "n1", id[2]); /* ...:02 */
    vm_on(f, "d", "n3", id[3]); /* no mesh address: no VTEP */
    struct netrec_set *set = get(f);
    assert_int_equal(set->n, 4);
    /* Held: the nodes of the network, each once, without a read. */
    struct netrec_set *held = netrecords_held(f->net, set->rev);
    assert_ptr_equal(held, set);
    assert_int_equal(held->n_nodes, 3);
    assert_string_equal(held->nodes[0], "n1");
    assert_string_equal(held->nodes[2], "n3");
    netrec_set_unref(held);
    assert_null(netrecords_held(f->net, set->rev + 1));
    _cleanup_free_ char *on1 = remote_of(f, set, "n1");
    _cleanup_free_ char *on2 = remote_of(f, set, "n2");
    _cleanup_free_ char *on3 = remote_of(f, set, "n3");
    assert_string_equal(on1, "100.96.0.2 100.96.0.2=02:fb:00:00:00:01");
    assert_string_equal(on2, "100.96.0.1 100.96.0.1=02:fb:00:00:00:00 "
                             "100.96.0.1=02:fb:00:00:00:02");
    assert_string_equal(on3, "100.96.0.1,100.96.0.2 "
                             "100.96.0.1=02:fb:00:00:00:00 "
                             "100.96.0.1=02:fb:00:00:00:02 "
                             "100.96.0.2=02:fb:00:00:00:01");
    /* A removed node carries nothing, without a change to the network. */
    exec_ok(f->s, "UPDATE nodes SET removed_at = 5 WHERE id = 'n2'", "");
    _cleanup_free_ char *gone = remote_of(f, set, "n3");
    assert_string_equal(gone, "100.96.0.1 100.96.0.1=02:fb:00:00:00:00 "
                              "100.96.0.1=02:fb:00:00:00:02");
    /* A node's new mesh address: its MACs' VTEP follows, in VTEP order,
     * in the texts made for the set too. */
    exec_ok(f->s, "UPDATE nodes SET removed_at = NULL WHERE id = 'n2'", "");
    exec_ok(f->s, "UPDATE nodes SET mesh_ip = '100.96.0.9' WHERE id = 'n1'",
            "");
    _cleanup_free_ char *moved = remote_of(f, set, "n3");
    assert_string_equal(moved, "100.96.0.2,100.96.0.9 "
                               "100.96.0.2=02:fb:00:00:00:01 "
                               "100.96.0.9=02:fb:00:00:00:00 "
                               "100.96.0.9=02:fb:00:00:00:02");
    _cleanup_free_ char *moved1 = remote_of(f, set, "n1");
    assert_string_equal(moved1, "100.96.0.2 100.96.0.2=02:fb:00:00:00:01");
    netrec_set_unref(set);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_follow_each_change_through_the_log),
        cmocka_unit_test(a_set_far_behind_the_log_is_read_whole),
        cmocka_unit_test(nothing_read_in_a_write_transaction_is_kept),
        cmocka_unit_test(each_node_sees_the_other_nodes_macs),
        cmocka_unit_test(a_whole_build_heals_a_change_not_told),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
