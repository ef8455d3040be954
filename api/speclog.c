/* FOG_SPEC_LOG: one JSON line per answer received, for the spec check
 * (tools/openapi_check.js). */
#include "api/speclog.h"
#include "common/util.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bodies past this are recorded without their text: the API's JSON
 * answers are far smaller, only image files get this big. */
#define SPECLOG_MAX_BODY (4u << 20)

void api_speclog_record(CURL *h, const char *req, size_t req_len, long status,
                        const char *content_type, const char *body,
                        size_t len)
{
    const char *file = getenv("FOG_SPEC_LOG");
    if (!file || !*file)
        return;
    char *method = NULL, *url = NULL;
    struct curl_header *allow = NULL;
    curl_easy_getinfo(h, CURLINFO_EFFECTIVE_METHOD, &method);
    curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url);
    if (!method || !url)
        return;
    /* "https://host:port/v1/x?y" -> "/v1/x?y" */
    const char *path = strstr(url, "://");
    path = path ? strchr(path + 3, '/') : url;
    if (!path)
        path = "/";
    json_t *line = json_pack("{s:s, s:s, s:I}", "method", method, "path", path,
                             "status", (json_int_t)status);
    if (!line)
        return;
    if (content_type)
        json_object_set_new(line, "content_type", json_string(content_type));
    if (curl_easy_header(h, "Allow", 0, CURLH_HEADER, -1, &allow) ==
        CURLHE_OK)
        json_object_set_new(line, "allow", json_string(allow->value));
    if (body && len <= SPECLOG_MAX_BODY)
        json_object_set_new(line, "body", json_stringn(body, len));
    if (req && req_len <= SPECLOG_MAX_BODY)
        json_object_set_new(line, "request", json_stringn(req, req_len));
    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text)
        return;
    /* One write: O_APPEND keeps concurrent records whole. A process
     * killed in the middle of it (tests kill agents mid-upload) leaves a
     * cut record; the newline before each record keeps the next one on a
     * line of its own, and the checker skips the cut one. */
    size_t n = strlen(text);
    char *rec = malloc(n + 2);
    if (rec) {
        rec[0] = '\n';
        memcpy(rec + 1, text, n);
        rec[n + 1] = '\n';
        int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t w = write(fd, rec, n + 2);
            (void)w;
            close(fd);
        }
        free(rec);
    }
    free(text);
}
