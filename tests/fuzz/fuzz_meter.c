/* The agent's usage-sample file (nodeagent/meter.c): whatever is on disk
 * after a crash, a full disk or a hand edit must load or be replaced, and
 * the loaded meter must keep working (observe, take, ack). */
#include "tests/fuzz/fuzz.h"
#include "nodeagent/meter.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static char *meter_path(void)
{
    static char *path;
    if (!path) {
        /* Memory-backed when possible: the meter syncs every save. */
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                          : getenv("TMPDIR")            ? getenv("TMPDIR")
                                                        : "/tmp";
        path = xasprintf("%s/fz-meter-%d.json", dir, (int)getpid());
    }
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const char *path = meter_path();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    const int64_t now = 1700000000;
    struct meter *m = meter_new(path, now);
    /* Drive the VMs the file may have named and one it cannot have. */
    json_auto_t *doc = json_loadb((const char *)data, size, 0, NULL);
    json_t *vms = json_object_get(doc, "vms");
    const char *id;
    json_t *v;
    json_auto_t *keep = json_array();
    json_object_foreach(vms, id, v) {
        meter_observe(m, id, true, now);
        meter_observe(m, id, false, now + 60);
        meter_observe(m, id, true, now + 61);
        json_array_append_new(keep, json_pack("{s:s}", "id", id));
    }
    meter_observe(m, "00000000-0000-4000-8000-000000000001", true, now);
    json_auto_t *s = meter_take(m, now + 120, 1000);
    meter_ack(m, s);
    json_auto_t *s2 = meter_take(m, now + 180, 3);
    meter_ack(m, s2);
    meter_retain(m, keep);
    (void)meter_pending(m);
    meter_free(m);

    /* Whatever was saved must load again. */
    m = meter_new(path, now + 200);
    meter_free(m);
    unlink(path);
    return 0;
}
