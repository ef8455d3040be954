/* fogctl verbs for the image catalog (image-import, image-list,
 * image-info, image-delete), application templates (template-list,
 * template-info), SSH keys of the account and a node's policy of which
 * templates and images it accepts (node-policy). */
#include "cli/cli.h"
#include "common/buf.h"
#include "common/fs.h"

#include <errno.h>
#include <time.h>

#define IMAGE_TABLE "name,version,state,format,size,visibility,os_distro,os_version,vm_count"
#define IMAGE_FIELDS                                                           \
    "id,name,version,visibility,source,state,state_reason,format,size,"       \
    "virtual_size,sha256,min_disk_gib,os_type,os_distro,os_version,os_arch,"  \
    "inspection,vm_count,created_at"
#define TEMPLATE_TABLE "name,image,vcpus,memory_mib,disk_gib,ports,description"
#define TEMPLATE_FIELDS                                                        \
    "name,description,image,image_url,image_sha256,vcpus,memory_mib,"         \
    "disk_gib,allow_tcg,ports"
#define SSH_KEY_TABLE "name,type,fingerprint,created_at"
#define SSH_KEY_MAX_BYTES 16384

static char *path_of(const char *collection, const char *ref,
                     const char *suffix)
{
    _cleanup_free_ char *e = cli_escape(ref);
    return xasprintf("/v1/%s/%s%s", collection, e, suffix ? suffix : "");
}

/* ---- images ---- */

/* Lift os.{type,distro,version,arch} to os_type... for tables. */
static void image_flatten(json_t *img)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(img, "os"), k, v)
    {
        _cleanup_free_ char *name = xasprintf("os_%s", k);
        json_object_set(img, name, v);
    }
}

static void print_image(struct cli *c, json_t *img)
{
    if (c->json) {
        cli_print_json(img);
        return;
    }
    image_flatten(img);
    cli_print_fields(img, IMAGE_FIELDS);
}

/* Poll an image until it leaves pending/uploading/importing, or the
 * timeout. 0 and *ret_img (the last answer) or CLI_FAIL. */
static int image_wait(struct cli *c, const char *id, int64_t timeout_s,
                      json_t **ret_img)
{
    _cleanup_free_ char *p = path_of("images", id, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        json_t *img = NULL;
        if (cli_call(c, "GET", p, NULL, &img) != 0)
            return CLI_FAIL;
        const char *s = json_string_value(json_object_get(img, "state"));
        if (!streq(s, "pending") && !streq(s, "uploading") &&
            !streq(s, "importing")) {
            *ret_img = img;
            return 0;
        }
        json_decref(img);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s)
            return cli_fail("image '%s' still %s after %llds", id, s,
                            (long long)timeout_s);
        nanosleep(&(struct timespec){ 0, 500 * 1000 * 1000 }, NULL);
    }
}

/* The caller's own image of this name if it still waits for an upload
 * (a retried import after a failed one); NULL otherwise. */
static json_t *image_awaiting_upload(struct cli *c, const char *name)
{
    struct api_client *api = cli_api(c);
    _cleanup_free_ char *p = path_of("images", name, NULL);
    struct api_reply rep;
    json_t *out = NULL;
    if (api && api_request(api, "GET", p, NULL, NULL, &rep) == 0 &&
        rep.status == 200) {
        const char *st = json_string_value(json_object_get(rep.json, "state"));
        const char *src = json_string_value(json_object_get(rep.json, "source"));
        if (streq(src, "upload") && (streq(st, "pending") || streq(st, "error")))
            out = json_incref(rep.json);
    }
    if (api)
        api_reply_clear(&rep);
    return out;
}

static int image_import(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("image-import");
    const char *name = a->pos[0], *file = a->npos > 1 ? a->pos[1] : NULL;
    const char *url = cli_flag(a, "url"), *sha = cli_flag(a, "sha256");
    if (!file == !url)
        return cli_usage(v, "give either FILE or --url URL --sha256 HEX");
    if (url && !sha)
        return cli_usage(v, "--url needs --sha256 (the image's SHA-256)");
    if (file && sha)
        return cli_usage(v, "--sha256 goes with --url (an upload's digest is "
                            "computed)");
    json_auto_t *body = json_object();
    json_t *jname = json_string(name);
    if (!jname)
        return cli_usage(v, "the name is not valid UTF-8");
    json_object_set_new(body, "name", jname);
    if (cli_flag_bool(a, "public"))
        json_object_set_new(body, "visibility", json_string("public"));
    if (cli_flag(a, "version"))
        json_object_set_new(body, "version", json_string(cli_flag(a, "version")));
    const char *md = cli_flag(a, "min-disk");
    if (md) {
        uint64_t n;
        if (parse_size(md, 1u << 30, &n) < 0 || n == 0 || n > 65536)
            return cli_usage(v, "invalid size '%s' for --min-disk", md);
        json_object_set_new(body, "min_disk_gib", json_integer((json_int_t)n));
    }
    if (url) {
        json_object_set_new(body, "url", json_string(url));
        json_object_set_new(body, "sha256", json_string(sha));
    }
    int64_t timeout = 3600;
    const char *t = cli_flag(a, "timeout");
    if (t && parse_int64(t, 1, 86400, &timeout) < 0)
        return cli_usage(v, "invalid --timeout '%s'", t);
    if (file && access(file, R_OK) < 0)
        return cli_fail("cannot read '%s': %s", file, strerror(errno));

    json_auto_t *img = NULL;
    struct api_client *api = cli_api(c);
    if (!api)
        return CLI_FAIL;
    struct api_reply rep;
    api_request(api, "POST", "/v1/images", body, NULL, &rep);
    if (rep.status == 201) {
        img = json_incref(rep.json);
    } else if (rep.status == 409 && file &&
               (img = image_awaiting_upload(c, name)) != NULL) {
        /* Same name, never filled: upload into it again. */
    } else {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        api_reply_clear(&rep);
        return cli_fail("%s", msg);
    }
    api_reply_clear(&rep);
    const char *id = json_string_value(json_object_get(img, "id"));
    if (!id)
        return cli_fail("the controller answered without an image id");
    _cleanup_free_ char *idc = xstrdup(id);

    if (file) {
        _cleanup_free_ char *p = path_of("images", idc, "/file");
        api_request_file(api, "PUT", p, file, &rep);
        if (rep.status != 200) {
            _cleanup_free_ char *msg = api_reply_describe(&rep);
            api_reply_clear(&rep);
            return cli_fail("image '%s' refused: %s", name, msg);
        }
        json_decref(img);
        img = json_incref(rep.json);
        api_reply_clear(&rep);
    } else if (cli_flag_bool(a, "wait")) {
        json_t *done = NULL;
        if (image_wait(c, idc, timeout, &done) != 0)
            return CLI_FAIL;
        json_decref(img);
        img = done;
        if (!streq(json_string_value(json_object_get(img, "state")), "ready")) {
            const char *why = json_string_value(
                json_object_get(img, "state_reason"));
            return cli_fail("image '%s' failed: %s", name,
                            why ? why : "unknown error");
        }
    }
    if (c->json)
        cli_print_json(img);
    else
        printf("image %s %s (%s), state %s\n", name,
               file ? "uploaded" : "importing", idc,
               json_string_value(json_object_get(img, "state")));
    return CLI_OK;
}

static int image_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/images", IMAGE_TABLE, image_flatten);
}

static int image_info(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = path_of("images", a->pos[0], NULL);
    json_auto_t *img = NULL;
    if (cli_call(c, "GET", p, NULL, &img) != 0)
        return CLI_FAIL;
    print_image(c, img);
    return CLI_OK;
}

static int image_delete(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = path_of("images", a->pos[0], NULL);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("image %s deleted\n", a->pos[0]);
    return CLI_OK;
}

/* ---- templates ---- */

/* ports [{proto, vm_port}] -> "80/tcp,443/tcp" for people. */
static void template_flatten(json_t *t)
{
    json_t *ports = json_object_get(t, "ports");
    struct buf b = BUF_INIT;
    size_t i;
    json_t *p;
    json_array_foreach(ports, i, p)
        buf_printf(&b, "%s%lld/%s", i ? "," : "",
                   (long long)json_integer_value(json_object_get(p, "vm_port")),
                   json_string_value(json_object_get(p, "proto")));
    json_object_set_new(t, "ports", json_string(b.data ? b.data : "-"));
    buf_free(&b);
}

static int template_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/templates", TEMPLATE_TABLE, template_flatten);
}

/* Multi-line text from the server with control characters (but newlines
 * and tabs) shown as '?', so it cannot drive the terminal. */
static void print_block(const char *label, const char *text)
{
    printf("%s:\n", label);
    for (const char *p = text; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        putchar((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?'
                                                                      : ch);
    }
    if (*text && text[strlen(text) - 1] != '\n')
        putchar('\n');
}

static int template_info(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = path_of("templates", a->pos[0], NULL);
    json_auto_t *t = NULL;
    if (cli_call(c, "GET", p, NULL, &t) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(t);
        return CLI_OK;
    }
    template_flatten(t);
    cli_print_fields(t, TEMPLATE_FIELDS);
    const char *ud = json_string_value(json_object_get(t, "user_data"));
    if (ud && *ud)
        print_block("user_data", ud);
    return CLI_OK;
}

/* ---- SSH keys ---- */

static int ssh_key_add(struct cli *c, struct cli_args *a)
{
    const char *file = a->pos[1];
    _cleanup_free_ char *text = NULL;
    size_t len;
    int e = file_read(file, SSH_KEY_MAX_BYTES, &text, &len);
    if (e < 0)
        return cli_fail("cannot read public key '%s': %s", file,
                        e == -EFBIG ? "larger than 16 KiB (is it the private "
                                      "key?)"
                                    : strerror(-e));
    if (strstr(text, "PRIVATE KEY"))
        return cli_fail("'%s' is a private key: give the .pub file", file);
    json_t *jname = json_string(a->pos[0]), *jkey = json_string(text);
    if (!jname || !jkey) {
        json_decref(jname);
        json_decref(jkey);
        return cli_fail("the name and the key must be UTF-8 text");
    }
    json_auto_t *body = json_pack("{s:o, s:o}", "name", jname, "public_key",
                                  jkey);
    json_auto_t *k = NULL;
    if (cli_call(c, "POST", "/v1/ssh-keys", body, &k) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(k);
    else
        printf("SSH key %s added (%s); it applies at each new VM's first "
               "boot, not to VMs that have already booted\n", a->pos[0],
               json_string_value(json_object_get(k, "fingerprint")));
    return CLI_OK;
}

static int ssh_key_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/ssh-keys", SSH_KEY_TABLE, NULL);
}

static int ssh_key_remove(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = path_of("ssh-keys", a->pos[0], NULL);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("SSH key %s removed\n", a->pos[0]);
    return CLI_OK;
}

/* ---- node policy ---- */

static int node_policy(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("node-policy");
    _cleanup_free_ char *p = path_of("nodes", a->pos[0], "/policy");
    json_t *tmpls = cli_flag_list(a, "template");
    json_t *imgs = cli_flag_list(a, "image");
    bool clear = cli_flag_bool(a, "clear");
    const char *pool = cli_flag(a, "pool");
    bool set = clear || pool || json_array_size(tmpls) ||
               json_array_size(imgs);
    if (clear && (pool || json_array_size(tmpls) || json_array_size(imgs)))
        return cli_usage(v, "--clear takes no --template, --image or --pool");
    if (pool && !streq(pool, "verified") && !streq(pool, "none"))
        return cli_usage(v, "invalid --pool '%s' (verified or none)", pool);
    json_auto_t *pol = NULL;
    if (set) {
        json_auto_t *body = json_pack("{s:O, s:O, s:s}", "templates", tmpls,
                                      "images", imgs, "pool",
                                      pool ? pool : "none");
        if (cli_call(c, "PUT", p, body, &pol) != 0)
            return CLI_FAIL;
    } else if (cli_call(c, "GET", p, NULL, &pol) != 0) {
        return CLI_FAIL;
    }
    if (c->json) {
        cli_print_json(pol);
        return CLI_OK;
    }
    if (!json_is_true(json_object_get(pol, "restricted"))) {
        printf("node %s accepts every template and image\n", a->pos[0]);
        return CLI_OK;
    }
    cli_print_fields(pol, "node_id,templates,images,pool");
    return CLI_OK;
}

const struct cli_verb cli_image_verbs[] = {
    { "image-import", image_import, 1, 2,
      "url=,sha256=,public,version=,min-disk=,wait,timeout=",
      "NAME FILE | NAME --url URL --sha256 HEX [--wait [--timeout S]] "
      "[--public] [--version V] [--min-disk SIZE]",
      "add an image to the catalog: upload FILE (qcow2 or raw) or have the "
      "controller fetch URL (--public: for everyone, admin only)" },
    { "image-list", image_list, 0, 0, "", "",
      "list images (your own and the public ones)" },
    { "image-info", image_info, 1, 1, "", "NAME",
      "show an image: state and reason, format, sizes, digest, OS found by "
      "inspection" },
    { "image-delete", image_delete, 1, 1, "", "NAME",
      "delete an image (refused while a VM uses it)" },
    { "template-list", template_list, 0, 0, "", "",
      "list application templates (image, size, published ports)" },
    { "template-info", template_info, 1, 1, "", "NAME",
      "show a template with its user-data" },
    { "key-add", ssh_key_add, 2, 2, "", "NAME PUBKEYFILE",
      "store an SSH public key on your account (put into new VMs at their "
      "first boot)" },
    { "ssh-key-list", ssh_key_list, 0, 0, "", "",
      "list the SSH public keys of your account" },
    { "ssh-key-remove", ssh_key_remove, 1, 1, "", "NAME",
      "remove an SSH public key" },
    { "node-policy", node_policy, 1, 1, "template=*,image=*,pool=,clear",
      "NODE [--template T]... [--image I]... [--pool verified] | NODE --clear",
      "show or set which templates and images a node accepts (none listed: "
      "all); --pool verified accepts the hub's verified application pool "
      "as a whole" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
