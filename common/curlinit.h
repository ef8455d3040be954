/* libcurl's process-wide initialisation, done once for every module that
 * makes a handle (the API client, the image fetcher), without the SSH
 * crypto setup libcurl would otherwise pull in for protocols we never
 * allow. */
#pragma once

/* curl_global_init once per process, thread-safe; call before the first
 * curl_easy_init. Before it, libssh2 (which Debian's libcurl links for
 * scp:// and sftp://) is initialised without its crypto library:
 * libcurl's own call would set OpenSSL's algorithm tables up, about
 * 1.4 MiB of resident pages in every agent. Our handles allow http and
 * https only; were libssh2 used anyway, OpenSSL 3 initialises itself on
 * first use. */
void curl_init_once(void);
