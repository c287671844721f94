/* real_next.c: the real-libc table of the preload libraries (common/real.h): the functions
 * behind their wrappers, found with dlsym(RTLD_NEXT). */
#include "common/real.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

struct myrt_real real;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded; /* set once load() has run */

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
    LOAD(getsockopt);
    LOAD(poll);
    LOAD(epoll_ctl);
    LOAD(epoll_wait);
    LOAD(epoll_pwait);
    LOAD(ppoll);
    LOAD(close);
    LOAD(syscall);
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
    LOAD(writev);
    LOAD(readv);
    LOAD(recv);
    LOAD(recvfrom);
    LOAD(recvmsg);
    LOAD(recvmmsg);
    LOAD(read);
    LOAD(open);
    LOAD(getaddrinfo);
    LOAD(getnameinfo);
    LOAD(gethostbyname2_r);
    LOAD(gethostbyaddr_r);
    LOAD(ioctl);
    LOAD(getifaddrs);
    LOAD(freeifaddrs);
    LOAD(if_nameindex);
    LOAD(if_nametoindex);
    LOAD(if_indextoname);
    LOAD(opendir);
    LOAD(readdir);
    LOAD(readdir64);
    LOAD(closedir);
    __atomic_store_n(&loaded, 1, __ATOMIC_RELEASE);
}

void real_init(void)
{
    if (__atomic_load_n(&loaded, __ATOMIC_ACQUIRE)) return; /* every wrapper's first step: cheap */
    int e = errno;
    pthread_once(&once, load);
    errno = e;
}

/* Loaded early, so that internal code running outside any wrapper (a load hook's debug line)
 * finds the table filled. */
__attribute__((constructor(101))) static void real_at_load(void)
{
    real_init();
}
