/* real.c: resolves the real libc functions behind libuvpn.so's wrappers (see real.h). */
#include "real.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

struct uvpn_real real;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define LOAD(name) (*(void **)&real.name = dlsym(RTLD_NEXT, #name))

static void load(void)
{
    LOAD(connect);
    LOAD(bind);
    LOAD(listen);
    LOAD(accept);
    LOAD(accept4);
    LOAD(getsockname);
    LOAD(getpeername);
    LOAD(close);
    LOAD(dup);
    LOAD(dup2);
    LOAD(dup3);
    LOAD(fcntl);
    if (!LOAD(fcntl64)) real.fcntl64 = real.fcntl;
    LOAD(sendto);
    LOAD(sendmsg);
    LOAD(sendmmsg);
    LOAD(send);
    LOAD(write);
    LOAD(recv);
    LOAD(recvfrom);
    LOAD(recvmsg);
    LOAD(recvmmsg);
    LOAD(read);
}

void real_init(void)
{
    int e = errno;
    pthread_once(&once, load);
    errno = e;
}
