/*
 * Echo server of the tiny test guest: sends every UDP datagram back to its
 * sender, and with -t also echoes TCP streams on the same port. Built
 * statically by build.sh and started by the guest's /init.
 *
 * usage: udp-echo [-t] [PORT]   (PORT defaults to 7)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* Largest UDP payload over IPv4 and IPv6. */
#define ECHO_MAX_DATAGRAM 65536

/*
 * Opens a socket of the given type bound to PORT on every address, IPv6
 * dual-stack when the kernel has IPv6, IPv4 otherwise. Returns the fd or -1.
 */
static int echo_bind(int type, unsigned short port)
{
    int one = 1, zero = 0;
    int fd = socket(AF_INET6, type, 0);

    if (fd >= 0) {
        struct sockaddr_in6 a6;

        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        a6.sin6_addr = in6addr_any;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
            return fd;
        close(fd);
    }

    fd = socket(AF_INET, type, 0);
    if (fd < 0)
        return -1;

    struct sockaddr_in a4;

    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons(port);
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Echoes one TCP connection until the peer closes it; runs in a child. */
static void echo_tcp_conn(int fd)
{
    char buf[4096];

    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));

            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return;
            off += w;
        }
    }
}

int main(int argc, char **argv)
{
    int with_tcp = 0, argi = 1;
    unsigned long port = 7;

    if (argi < argc && strcmp(argv[argi], "-t") == 0) {
        with_tcp = 1;
        argi++;
    }
    if (argi < argc) {
        char *end;

        errno = 0;
        port = strtoul(argv[argi], &end, 10);
        if (errno != 0 || *end != '\0' || port == 0 || port > 65535) {
            fprintf(stderr, "udp-echo: invalid port '%s'\n", argv[argi]);
            return 2;
        }
    }

    /* Children of the TCP side are reaped by the kernel. */
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    int ufd = echo_bind(SOCK_DGRAM, (unsigned short)port);

    if (ufd < 0) {
        fprintf(stderr, "udp-echo: cannot bind udp port %lu: %s\n", port,
                strerror(errno));
        return 1;
    }

    int tfd = -1;

    if (with_tcp) {
        tfd = echo_bind(SOCK_STREAM, (unsigned short)port);
        if (tfd < 0 || listen(tfd, 16) != 0) {
            fprintf(stderr, "udp-echo: cannot listen on tcp port %lu: %s\n",
                    port, strerror(errno));
            return 1;
        }
    }

    char *buf = malloc(ECHO_MAX_DATAGRAM);

    if (!buf)
        return 1;

    struct pollfd pfd[2] = {
        { .fd = ufd, .events = POLLIN },
        { .fd = tfd, .events = POLLIN },
    };

    for (;;) {
        if (poll(pfd, tfd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (pfd[0].revents & POLLIN) {
            struct sockaddr_storage peer;
            socklen_t plen = sizeof(peer);
            ssize_t n = recvfrom(ufd, buf, ECHO_MAX_DATAGRAM, 0,
                                 (struct sockaddr *)&peer, &plen);

            if (n >= 0)
                sendto(ufd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
        }
        if (tfd >= 0 && (pfd[1].revents & POLLIN)) {
            int cfd = accept(tfd, NULL, NULL);

            if (cfd < 0)
                continue;
            pid_t pid = fork();

            if (pid == 0) {
                close(tfd);
                close(ufd);
                echo_tcp_conn(cfd);
                _exit(0);
            }
            close(cfd);
        }
    }
}
