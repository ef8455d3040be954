/* One curl_global_init per process, shared by the API client and the
 * image fetcher, with libssh2's crypto initialisation left out. */
#include "common/curlinit.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>

/* libssh2.h's LIBSSH2_INIT_NO_CRYPTO (a stable part of its ABI); the
 * header is not needed for one call found at run time. */
#define SSH2_INIT_NO_CRYPTO 0x0001

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    /* libssh2_init counts its callers and sets its crypto library up only
     * for the first, unless told not to: called first with the flag, it
     * makes libcurl's libssh2_init(0) a count. Looked up rather than
     * linked, as libcurl may be built without libssh2. */
    int (*ssh2_init)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "libssh2_init");
    if (ssh2_init)
        ssh2_init(SSH2_INIT_NO_CRYPTO);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void curl_init_once(void)
{
    pthread_once(&curl_once, curl_init);
}
