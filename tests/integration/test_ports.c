/* Published host ports: a requested port is honoured or the create is
 * refused (409 naming the node's range, what is free and what its
 * provider permits), placement picks a node where the requested ports are
 * free and permitted, ports and their public address survive a controller
 * restart, and the public address is the configured one or else the one
 * the controller saw the node connect from. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static struct tu_ctl ctl;
static char *tenant_key;
static char *a_id, *a_cred, *b_id, *b_cred;
/* Nodes stay online between status posts for the whole test. */
static const char *const serve_args[] = { "--heartbeat", "3600", NULL };

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

static void status(const char *cred, const char *body, long want)
{
    json_decref(api(cred, "POST", "/v1/agent/status", body, want));
}

/* The VM's ports by "host_port/proto" -> public_address, as one text. */
static char *ports_text(const char *vm)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ports", vm);
    json_auto_t *j = api(tenant_key, "GET", p, NULL, 200);
    struct buf b = BUF_INIT;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(j, "items"), i, it)
        buf_printf(&b, "%lld/%s=%s ",
                   (long long)json_int(it, "host_port", -1),
                   json_str(it, "proto"),
                   json_str(it, "public_address") ?
                       json_str(it, "public_address") : "-");
    return b.data ? buf_steal(&b) : xstrdup("");
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, serve_args);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"pt-tenant\",\"role\":\"tenant\"}", 201,
                      NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"pt-tenant\"}", 201, "secret");
    /* Node A: range 30000-30009, permits 80 and 27015, no --public-ip. */
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "pt-a",
                                  "\"port_min\":30000,\"port_max\":30009,"
                                  "\"permit_ports\":[80,27015]",
                                  &a_id, &a_cred), 201);
    status(a_cred, "{\"vms\":[],\"permit_ports\":[27015,80]}", 200);
    return 0;
}

static int teardown(void **state)
{
    free(tenant_key);
    free(a_id);
    free(a_cred);
    free(b_id);
    free(b_cred);
    tu_ctl_destroy(&ctl);
    return 0;
}

static void a_port_outside_range_and_permits_is_refused_naming_both(void **s)
{
    json_auto_t *j = api(tenant_key, "POST", "/v1/vms",
                         "{\"name\":\"pt-no\",\"vcpus\":1,\"memory_mib\":128,"
                         "\"disk_gib\":1,\"allow_tcg\":true,\"image\":\"fog-tiny\",\"ports\":[{"
                         "\"proto\":\"tcp\",\"vm_port\":80,\"host_port\":"
                         "8080}]}", 409);
    assert_string_equal(json_str(j, "field"), "ports");
    const char *d = json_str(j, "detail");
    assert_non_null(strstr(d, "8080/tcp"));
    assert_non_null(strstr(d, "node 'pt-a' publishes 30000-30009"));
    assert_non_null(strstr(d, "lowest free 30000/tcp"));
    assert_non_null(strstr(d, "permits 80, 27015"));
    /* Nothing of it was kept. */
    long st;
    json_auto_t *g = tu_api(&ctl, tenant_key, "GET", "/v1/vms/pt-no", NULL,
                            &st);
    assert_int_equal(st, 404);
}

static void requested_ports_are_honoured_and_show_the_public_address(void **s)
{
    json_decref(api(tenant_key, "POST", "/v1/vms",
                    "{\"name\":\"pt-game\",\"vcpus\":1,\"memory_mib\":128,"
                    "\"disk_gib\":1,\"allow_tcg\":true,\"image\":\"fog-tiny\",\"ports\":["
                    "{\"proto\":\"tcp\",\"vm_port\":8080,\"host_port\":80},"
                    "{\"proto\":\"udp\",\"vm_port\":27015,\"host_port\":27015},"
                    "{\"proto\":\"tcp\",\"vm_port\":22}]}", 201));
    json_auto_t *vm = api(tenant_key, "GET", "/v1/vms/pt-game", NULL, 200);
    assert_string_equal(json_str(vm, "node_id"), a_id);
    /* No --public-ip: the address the controller saw node A at. */
    _cleanup_free_ char *t = ports_text("pt-game");
    assert_string_equal(t, "30000/tcp=127.0.0.1:30000 80/tcp=127.0.0.1:80 "
                           "27015/udp=127.0.0.1:27015 ");
    json_auto_t *n = api(ctl.admin_key, "GET", "/v1/nodes/pt-a", NULL, 200);
    assert_string_equal(json_str(n, "public_ip"), "127.0.0.1");
    assert_string_equal(json_str(n, "public_ip_source"), "observed");
    assert_string_equal(json_str(n, "port_range"), "30000-30009");
    json_t *pp = json_object_get(n, "permit_ports");
    assert_int_equal(json_array_size(pp), 2);
    assert_int_equal(json_integer_value(json_array_get(pp, 0)), 80);
    assert_int_equal(json_integer_value(json_array_get(pp, 1)), 27015);
}

static void port_add_honours_or_refuses_the_requested_port(void **s)
{
    json_auto_t *bad = api(tenant_key, "POST", "/v1/vms/pt-game/ports",
                           "{\"proto\":\"tcp\",\"vm_port\":443,\"host_port\":"
                           "8443}", 409);
    assert_string_equal(json_str(bad, "type") + strlen(json_str(bad, "type")) -
                            strlen("port-unavailable"), "port-unavailable");
    assert_non_null(strstr(json_str(bad, "detail"), "30000-30009"));
    assert_non_null(strstr(json_str(bad, "detail"), "lowest free 30001/tcp"));
    json_auto_t *taken = api(tenant_key, "POST", "/v1/vms/pt-game/ports",
                             "{\"proto\":\"tcp\",\"vm_port\":81,\"host_port\":"
                             "80}", 409);
    assert_non_null(strstr(json_str(taken, "detail"), "taken"));
    json_auto_t *ok = api(tenant_key, "POST", "/v1/vms/pt-game/ports",
                          "{\"proto\":\"tcp\",\"vm_port\":443,\"host_port\":"
                          "30005}", 201);
    assert_int_equal(json_int(ok, "host_port", 0), 30005);
    assert_string_equal(json_str(ok, "public_address"), "127.0.0.1:30005");
}

static void placement_picks_the_node_where_the_port_is_free(void **s)
{
    /* Node A already publishes 80/tcp: a second VM asking for it is
     * refused while A is the only node... */
    static const char *web2 =
        "{\"name\":\"pt-web2\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"allow_tcg\":true,\"image\":\"fog-tiny\",\"ports\":[{\"proto\":\"tcp\",\"vm_port\":80,"
        "\"host_port\":80}]}";
    json_auto_t *no = api(tenant_key, "POST", "/v1/vms", web2, 409);
    assert_non_null(strstr(json_str(no, "detail"), "permits 80 (taken), 27015"));
    /* ...and goes to node B, which permits 80 too, once B is there. */
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "pt-b",
                                  "\"public_ip\":\"198.51.100.7\","
                                  "\"permit_ports\":[80,443]",
                                  &b_id, &b_cred), 201);
    status(b_cred, "{\"vms\":[]}", 200);
    json_decref(api(tenant_key, "POST", "/v1/vms", web2, 201));
    json_auto_t *vm = api(tenant_key, "GET", "/v1/vms/pt-web2", NULL, 200);
    assert_string_equal(json_str(vm, "node_id"), b_id);
    _cleanup_free_ char *t = ports_text("pt-web2");
    assert_string_equal(t, "80/tcp=198.51.100.7:80 ");
    json_auto_t *n = api(ctl.admin_key, "GET", "/v1/nodes/pt-b", NULL, 200);
    assert_string_equal(json_str(n, "public_ip_source"), "configured");
}

static void the_agent_permits_what_it_reports_and_nothing_malformed(void **s)
{
    status(a_cred, "{\"vms\":[],\"permit_ports\":[80,80]}", 400);
    status(a_cred, "{\"vms\":[],\"permit_ports\":[0]}", 400);
    status(a_cred, "{\"vms\":[],\"permit_ports\":[\"80\"]}", 400);
    /* 3000 is in neither node's range: refused until node A permits it,
     * then placed there. */
    static const char *mc =
        "{\"name\":\"pt-mc\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"allow_tcg\":true,\"image\":\"fog-tiny\",\"ports\":[{\"proto\":"
        "\"tcp\",\"vm_port\":3000,\"host_port\":3000}]}";
    json_auto_t *no = api(tenant_key, "POST", "/v1/vms", mc, 409);
    assert_non_null(strstr(json_str(no, "detail"), "3000/tcp"));
    status(a_cred, "{\"vms\":[],\"permit_ports\":[80,27015,3000]}", 200);
    json_decref(api(tenant_key, "POST", "/v1/vms", mc, 201));
    json_auto_t *vm = api(tenant_key, "GET", "/v1/vms/pt-mc", NULL, 200);
    assert_string_equal(json_str(vm, "node_id"), a_id);
}

static void ports_survive_a_controller_restart(void **s)
{
    _cleanup_free_ char *before = ports_text("pt-game");
    _cleanup_free_ char *before2 = ports_text("pt-web2");
    tu_ctl_stop(&ctl, SIGTERM);
    tu_ctl_restart(&ctl);
    _cleanup_free_ char *after = ports_text("pt-game");
    _cleanup_free_ char *after2 = ports_text("pt-web2");
    assert_string_equal(after, before);
    assert_string_equal(after2, before2);
    /* And node A is still told to publish exactly them. */
    json_auto_t *d = api(a_cred, "GET", "/v1/agent/desired", NULL, 200);
    struct buf b = BUF_INIT;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(d, "ports"), i, it)
        buf_printf(&b, "%lld/%s ", (long long)json_int(it, "host_port", 0),
                   json_str(it, "proto"));
    _cleanup_free_ char *doc = buf_steal(&b);
    assert_non_null(strstr(doc, "80/tcp"));
    assert_non_null(strstr(doc, "27015/udp"));
    assert_non_null(strstr(doc, "30000/tcp"));
    assert_non_null(strstr(doc, "30005/tcp"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_port_outside_range_and_permits_is_refused_naming_both),
        cmocka_unit_test(requested_ports_are_honoured_and_show_the_public_address),
        cmocka_unit_test(port_add_honours_or_refuses_the_requested_port),
        cmocka_unit_test(placement_picks_the_node_where_the_port_is_free),
        cmocka_unit_test(the_agent_permits_what_it_reports_and_nothing_malformed),
        cmocka_unit_test(ports_survive_a_controller_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
