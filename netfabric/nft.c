/* libnftables glue: a context per call, output and errors captured into
 * buffers so nothing is printed by the library. */
#include "netfabric/nft.h"

#include <errno.h>
#include <nftables/libnftables.h>

static void nft_ctx_freep(struct nft_ctx **c)
{
    if (*c)
        nft_ctx_free(*c);
}

static struct nft_ctx *ctx_new(void)
{
    struct nft_ctx *c = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!c)
        return NULL;
    if (nft_ctx_buffer_output(c) < 0 || nft_ctx_buffer_error(c) < 0) {
        nft_ctx_free(c);
        return NULL;
    }
    return c;
}

static void take_error(struct nft_ctx *c, char **ret_error)
{
    if (!ret_error)
        return;
    const char *e = nft_ctx_get_error_buffer(c);
    *ret_error = xstrdup(e && *e ? e : "nftables command failed");
}

int nft_apply(const char *script, bool dry_run, char **ret_error)
{
    __attribute__((cleanup(nft_ctx_freep))) struct nft_ctx *c = ctx_new();
    if (!c)
        return -ENOMEM;
    nft_ctx_set_dry_run(c, dry_run);
    if (nft_run_cmd_from_buffer(c, script) != 0) {
        take_error(c, ret_error);
        return -EINVAL;
    }
    return 0;
}

int nft_query(const char *cmd, char **ret_output, char **ret_error)
{
    __attribute__((cleanup(nft_ctx_freep))) struct nft_ctx *c = ctx_new();
    if (!c)
        return -ENOMEM;
    if (nft_run_cmd_from_buffer(c, cmd) != 0) {
        take_error(c, ret_error);
        const char *e = nft_ctx_get_error_buffer(c);
        return e && strstr(e, "No such file") ? -ENOENT : -EINVAL;
    }
    const char *o = nft_ctx_get_output_buffer(c);
    *ret_output = xstrdup(o ? o : "");
    return 0;
}
