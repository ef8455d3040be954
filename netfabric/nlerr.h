/* Shared by the netfabric files that talk netlink through libnl: open a
 * socket, and turn libnl's error codes into -errno. */
#pragma once

#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

/* libnl error (negative NLE_*) to -errno. */
int netfabric__nlerr(int nlerr);
/* A connected socket of the protocol (NETLINK_ROUTE, NETLINK_GENERIC) or
 * NULL; free with nl_socket_free. */
struct nl_sock *netfabric__nl_open(int protocol);

static inline void nl_socket_freep(struct nl_sock **sk)
{
    if (*sk)
        nl_socket_free(*sk);
}
#define _cleanup_nl_sock_ __attribute__((cleanup(nl_socket_freep)))

static inline void nlmsg_freep(struct nl_msg **m)
{
    if (*m)
        nlmsg_free(*m);
}
#define _cleanup_nlmsg_ __attribute__((cleanup(nlmsg_freep)))
