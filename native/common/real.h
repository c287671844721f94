/* real.h: the real-libc table, the one way MyRT's internal code reaches the libc functions that
 * its preload libraries interpose. Internal code (common/, uvpn/core/, the wrappers' own helpers)
 * never calls an interposed name directly: in libuvpn.so that would re-enter its own wrapper.
 * Two implementations, chosen per library at link time:
 *   real_next.c  dlsym(RTLD_NEXT): the functions behind the wrappers (libuvpn.so, libxufs.so);
 *   real_libc.c  libc's own functions (libmyrt.so, which wraps nothing; test and fuzz programs).
 * real_init() is idempotent and thread-safe (pthread_once); every wrapper calls it first, and
 * real_next.c also runs it when the library is loaded. scripts/check_layers.sh enforces the rule. */
#ifndef MYRT_REAL_H
#define MYRT_REAL_H

#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

struct myrt_real {
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*bind)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*getsockname)(int, struct sockaddr *, socklen_t *);
    int (*getpeername)(int, struct sockaddr *, socklen_t *);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*epoll_ctl)(int, int, int, struct epoll_event *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*close)(int);
    long (*syscall)(long, ...);      /* libxufs.so wraps syscall() (openat2, execveat) */
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);   /* falls back to fcntl when libc lacks it */
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
    ssize_t (*read)(int, void *, size_t);
    int (*open)(const char *, int, ...);
    int (*getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    int (*getnameinfo)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int);
    int (*gethostbyname2_r)(const char *, int, struct hostent *, char *, size_t, struct hostent **,
                            int *);
    int (*gethostbyaddr_r)(const void *, socklen_t, int, struct hostent *, char *, size_t,
                           struct hostent **, int *);
    /* interface enumeration (uvpn/wrap/ifaddrs.c) */
    int (*ioctl)(int, unsigned long, ...);
    int (*getifaddrs)(struct ifaddrs **);
    void (*freeifaddrs)(struct ifaddrs *);
    struct if_nameindex *(*if_nameindex)(void);
    unsigned int (*if_nametoindex)(const char *);
    char *(*if_indextoname)(unsigned int, char *);
    DIR *(*opendir)(const char *);
    struct dirent *(*readdir)(DIR *);
    struct dirent64 *(*readdir64)(DIR *);
    int (*closedir)(DIR *);
};

extern struct myrt_real real;

/* Loads the pointers once; errno is preserved. A pointer left NULL (symbol missing) makes the
 * corresponding wrapper fail with ENOSYS. */
void real_init(void);

#endif
