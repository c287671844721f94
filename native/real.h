/* real.h: pointers to the real libc functions that libuvpn.so wraps, found with
 * dlsym(RTLD_NEXT). All internal socket work goes through these, never through the wrappers.
 * real_init() is idempotent and thread-safe (pthread_once); every wrapper calls it first. */
#ifndef UVPN_REAL_H
#define UVPN_REAL_H

#include <sys/socket.h>
#include <time.h>

struct uvpn_real {
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*bind)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*getsockname)(int, struct sockaddr *, socklen_t *);
    int (*getpeername)(int, struct sockaddr *, socklen_t *);
    int (*close)(int);
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
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
    ssize_t (*read)(int, void *, size_t);
};

extern struct uvpn_real real;

/* Loads the pointers once; errno is preserved. A pointer left NULL (symbol missing) makes the
 * corresponding wrapper fail with ENOSYS. */
void real_init(void);

#endif
