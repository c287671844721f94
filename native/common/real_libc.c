/* real_libc.c: the real.h table for libmyrt.so. The seccomp supervisor wraps nothing, so the
 * "real" functions are simply libc's own; the shared overlay code (overlay.c, policy.c) calls
 * them through the same table as in libuvpn.so. */
#include "common/real.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

struct myrt_real real = {
    .connect = connect,
    .bind = bind,
    .listen = listen,
    .accept = accept,
    .accept4 = accept4,
    .getsockname = getsockname,
    .getpeername = getpeername,
    .getsockopt = getsockopt,
    .poll = poll,
    .epoll_ctl = epoll_ctl,
    .epoll_wait = epoll_wait,
    .epoll_pwait = epoll_pwait,
    .ppoll = ppoll,
    .close = close,
    .syscall = syscall,
    .dup = dup,
    .dup2 = dup2,
    .dup3 = dup3,
    .fcntl = fcntl,
    .fcntl64 = fcntl,
    .sendto = sendto,
    .sendmsg = sendmsg,
    .sendmmsg = sendmmsg,
    .send = send,
    .write = write,
    .writev = writev,
    .readv = readv,
    .recv = recv,
    .recvfrom = recvfrom,
    .recvmsg = recvmsg,
    .recvmmsg = recvmmsg,
    .read = read,
    .open = open,
    .getaddrinfo = getaddrinfo,
    .getnameinfo = getnameinfo,
    .gethostbyname2_r = gethostbyname2_r,
    .gethostbyaddr_r = gethostbyaddr_r,
    .ioctl = ioctl,
    .getifaddrs = getifaddrs,
    .freeifaddrs = freeifaddrs,
    .if_nameindex = if_nameindex,
    .if_nametoindex = if_nametoindex,
    .if_indextoname = if_indextoname,
    .opendir = opendir,
    .readdir = readdir,
    .readdir64 = readdir64,
    .closedir = closedir,
};

void real_init(void) {}
