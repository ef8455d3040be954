/* The OpenAPI document and the controller's route table describe the same
 * routes: a route in the code missing from api/openapi.yaml, or a route in
 * the spec the code does not serve, fails this test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "controller/app.h"

#include <stdio.h>

struct spec_route {
    char *method; /* upper case */
    char *path;
};

/* Collect "  /path:" keys under "paths:" and their "    method:" keys. */
static size_t spec_routes(const char *text, struct spec_route *out, size_t max)
{
    size_t n = 0;
    bool in_paths = false;
    char *cur = NULL;
    _cleanup_free_ char *copy = xstrdup(text);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != ' ' && line[0] != '#' && line[0] != '\0') {
            in_paths = strncmp(line, "paths:", 6) == 0;
            continue;
        }
        if (!in_paths)
            continue;
        if (strncmp(line, "  /", 3) == 0) {
            free(cur);
            cur = xstrndup(line + 2, strcspn(line + 2, ":"));
            continue;
        }
        static const char *const methods[] = { "get", "post", "put", "patch",
                                               "delete", "head" };
        for (size_t m = 0; cur && m < ARRAY_SIZE(methods); m++) {
            size_t l = strlen(methods[m]);
            if (strncmp(line, "    ", 4) == 0 && line[4] != ' ' &&
                strncmp(line + 4, methods[m], l) == 0 && line[4 + l] == ':') {
                assert_true(n < max);
                out[n].method = xstrdup(methods[m]);
                for (char *c = out[n].method; *c; c++)
                    *c = (char)(*c - 32);
                out[n].path = xstrdup(cur);
                n++;
            }
        }
    }
    free(cur);
    return n;
}

static void spec_and_route_table_list_the_same_routes(void **state)
{
    _cleanup_free_ char *text = NULL;
    const char *path = getenv("FOG_OPENAPI") ? getenv("FOG_OPENAPI")
                                             : "api/openapi.yaml";
    assert_int_equal(file_read(path, 4 << 20, &text, NULL), 0);
    struct spec_route spec[256];
    size_t n = spec_routes(text, spec, ARRAY_SIZE(spec));
    int missing = 0;

    for (size_t i = 0; i < app_n_routes; i++) {
        bool found = false;
        for (size_t k = 0; k < n; k++)
            if (streq(spec[k].method, app_routes[i].method) &&
                streq(spec[k].path, app_routes[i].pattern))
                found = true;
        if (!found) {
            fprintf(stderr, "in the code, not in the spec: %s %s\n",
                    app_routes[i].method, app_routes[i].pattern);
            missing++;
        }
    }
    for (size_t k = 0; k < n; k++) {
        bool found = false;
        for (size_t i = 0; i < app_n_routes; i++)
            if (streq(spec[k].method, app_routes[i].method) &&
                streq(spec[k].path, app_routes[i].pattern))
                found = true;
        if (!found) {
            fprintf(stderr, "in the spec, not in the code: %s %s\n",
                    spec[k].method, spec[k].path);
            missing++;
        }
        free(spec[k].method);
        free(spec[k].path);
    }
    assert_true(n > 0);
    assert_int_equal(missing, 0);
}

static void spec_parser_sees_methods_under_paths_only(void **state)
{
    const char *doc = "openapi: 3.0.3\n"
                      "paths:\n"
                      "  /v1/x/{id}:\n"
                      "    get:\n"
                      "      summary: x\n"
                      "    delete:\n"
                      "      responses: {}\n"
                      "components:\n"
                      "  /not-a-path:\n"
                      "    get:\n";
    struct spec_route r[8];
    size_t n = spec_routes(doc, r, 8);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].method, "GET");
    assert_string_equal(r[0].path, "/v1/x/{id}");
    assert_string_equal(r[1].method, "DELETE");
    for (size_t i = 0; i < n; i++) {
        free(r[i].method);
        free(r[i].path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_parser_sees_methods_under_paths_only),
        cmocka_unit_test(spec_and_route_table_list_the_same_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
