/* fcntl_arg.h: whether an fcntl command takes a third argument (fcntl(2)), so that the fcntl
 * wrappers of libuvpn.so and libxufs.so read the variadic argument only when the caller passed
 * one (reading one that was not passed is undefined behaviour, and AddressSanitizer reports it,
 * e.g. for Python's fcntl(fd, F_GETFD) in a vfork child). */
#ifndef MYRT_FCNTL_ARG_H
#define MYRT_FCNTL_ARG_H

#include <fcntl.h>

static inline int fcntl_takes_arg(int cmd)
{
    switch (cmd) {
    case F_GETFD:
    case F_GETFL:
    case F_GETOWN:
    case F_GETSIG:
    case F_GETLEASE:
    case F_GETPIPE_SZ:
    case F_GET_SEALS:
        return 0;
    default:
        return 1;
    }
}

#endif
