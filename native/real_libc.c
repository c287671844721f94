/* real_libc.c: the real.h table for libmyrt.so. The seccomp supervisor wraps nothing, so the
 * "real" functions are simply libc's own; the shared overlay code (overlay.c, policy.c) calls
 * them through the same table as in libuvpn.so. */
#include "real.h"

#include <fcntl.h>
#include <unistd.h>

struct uvpn_real real = {
    .connect = connect,
    .bind = bind,
    .listen = listen,
    .accept = accept,
    .accept4 = accept4,
    .getsockname = getsockname,
    .getpeername = getpeername,
    .close = close,
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
    .recv = recv,
    .recvfrom = recvfrom,
    .recvmsg = recvmsg,
    .recvmmsg = recvmmsg,
    .read = read,
};

void real_init(void) {}
