/* CPU facts for virtualisation (see cpuinfo.h). */
#include "common/cpuinfo.h"
#include "common/fs.h"

#include <sys/stat.h>

/* The value of "key : value" in one line, or NULL. */
static const char *line_value(const char *line, size_t len, const char *key)
{
    size_t kl = strlen(key);
    if (len < kl || strncmp(line, key, kl) != 0)
        return NULL;
    const char *p = line + kl, *end = line + len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p < end && *p == ':' ? p + 1 : NULL;
}

bool cpuinfo_has_virt(const char *text)
{
    bool saw_flags = false;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *v = line_value(line, len, "flags");
        if (v) {
            saw_flags = true;
            _cleanup_free_ char *words = xasprintf(" %.*s ",
                                                   (int)(line + len - v), v);
            for (char *p = words; *p; p++)
                if (*p == '\t')
                    *p = ' ';
            if (strstr(words, " vmx ") || strstr(words, " svm "))
                return true;
        }
        line = nl ? nl + 1 : NULL;
    }
    /* Only x86 lists "flags"; elsewhere /dev/kvm alone tells. */
    return !saw_flags;
}

bool cpuinfo_kvm_usable(const char *root)
{
    _cleanup_free_ char *dev = path_join_root(root, "/dev/kvm");
    _cleanup_free_ char *path = path_join_root(root, "/proc/cpuinfo");
    _cleanup_free_ char *text = NULL;
    struct stat st;
    if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode))
        return false;
    return file_read(path, 4 << 20, &text, NULL) == 0 && cpuinfo_has_virt(text);
}
