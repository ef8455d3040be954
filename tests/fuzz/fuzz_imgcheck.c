/* Image content checks (images/imgcheck.c) on whatever a tenant uploads or
 * a URL serves: any header, any table offsets, any file size. */
#include "tests/fuzz/fuzz.h"
#include "images/imgcheck.h"

#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fz-img", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    const uint64_t limits[] = { 0, UINT64_C(1) << 40, 4096 };
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++) {
        struct imgcheck_info info;
        char *reason = NULL;
        if (imgcheck_fd(fd, limits[i], &info, &reason) == 0) {
            if (info.file_size != size || info.format >= IMGCHECK_FORMAT_MAX ||
                (limits[i] && info.virtual_size > limits[i]))
                abort(); /* accepted what the contract refuses */
        } else if (!reason) {
            abort(); /* a refusal must say why */
        }
        free(reason);
    }
    close(fd);
    return 0;
}
