/* libnl glue shared by the netfabric netlink files: sockets and error
 * codes. */
#include "netfabric/nlerr.h"

#include <errno.h>

int netfabric__nlerr(int e)
{
    switch (e < 0 ? -e : e) {
    case 0: return 0;
    case NLE_EXIST: return -EEXIST;
    case NLE_OBJ_NOTFOUND: return -ENOENT;
    case NLE_NODEV: return -ENODEV;
    case NLE_NOMEM: return -ENOMEM;
    case NLE_PERM: return -EPERM;
    case NLE_NOACCESS: return -EACCES;
    case NLE_INVAL: return -EINVAL;
    case NLE_BUSY: return -EBUSY;
    case NLE_RANGE: return -ERANGE;
    case NLE_AGAIN: return -EAGAIN;
    case NLE_MSGSIZE: return -EMSGSIZE;
    case NLE_OPNOTSUPP: return -EOPNOTSUPP;
    case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
    case NLE_NOADDR: return -EADDRNOTAVAIL;
    case NLE_MSG_TOOSHORT: return -EBADMSG;
    default: return -EIO;
    }
}

struct nl_sock *netfabric__nl_open(int protocol)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return NULL;
    if (nl_connect(sk, protocol) < 0) {
        nl_socket_free(sk);
        return NULL;
    }
    return sk;
}
