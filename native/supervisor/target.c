/* target.c: acting on a supervised process (see target.h). */
#include "supervisor/target.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

pid_t tg_tgid(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return 0;
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *t = strstr(buf, "\nTgid:");
    return t ? (pid_t)atoi(t + 7) : 0;
}

/* pidfds of the processes served lately: one pidfd_open per process instead of one per stopped
 * call (seven calls per connection under python3). Only a process's leader is cached, by its
 * pid: a notification from thread id X means X is alive, and when X is a leader its pid cannot
 * have been reused while it lives; once a cached process is gone, pidfd_getfd fails with ESRCH
 * and the entry is opened again. A notification from another thread opens a pidfd for its
 * process as before (its thread id may be reused by another process once it exits).
 * pidfd_getfd runs under the lock, so no entry is closed while in use. */
#define PIDFD_CACHE 16

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    pid_t pid;
    int pidfd; /* + 1; 0: empty */
} cache[PIDFD_CACHE];
static unsigned cache_next;

/* A pidfd for the process of tid, *owned set when the caller must close it (not cached), or -1.
 * fresh: reopen a cached one (its process is gone). Lock held. */
static int pidfd_for(pid_t tid, int fresh, int *owned)
{
    *owned = 0;
    for (int i = 0; i < PIDFD_CACHE; i++) {
        if (!cache[i].pidfd || cache[i].pid != tid) continue;
        if (!fresh) return cache[i].pidfd - 1;
        close(cache[i].pidfd - 1);
        cache[i].pidfd = 0;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, tid, 0);
    if (pidfd >= 0) { /* a leader: cached */
        unsigned k = cache_next++ % PIDFD_CACHE;
        if (cache[k].pidfd) close(cache[k].pidfd - 1);
        cache[k].pid = tid;
        cache[k].pidfd = pidfd + 1;
        return pidfd;
    }
    if (errno != EINVAL && errno != ENOENT) return -1;
    pid_t tgid = tg_tgid(tid); /* a thread, not the leader */
    if (tgid <= 0 || tgid == tid) {
        errno = ESRCH;
        return -1;
    }
    pidfd = (int)syscall(SYS_pidfd_open, tgid, 0);
    *owned = pidfd >= 0;
    return pidfd;
}

int tg_getfd(pid_t pid, int fd)
{
    pthread_mutex_lock(&cache_lock);
    int r = -ESRCH;
    for (int fresh = 0; fresh < 2; fresh++) {
        int owned;
        int pidfd = pidfd_for(pid, fresh, &owned);
        if (pidfd < 0) {
            r = -errno;
            break;
        }
        r = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        int e = errno;
        if (owned) close(pidfd);
        if (r >= 0) break;
        r = -e;
        if (r != -ESRCH || owned) break; /* EBADF and the like are the caller's answer */
    }
    pthread_mutex_unlock(&cache_lock);
    return r;
}

void tg_forget(void)
{
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < PIDFD_CACHE; i++) {
        if (cache[i].pidfd) close(cache[i].pidfd - 1);
        cache[i].pidfd = 0;
    }
    pthread_mutex_unlock(&cache_lock);
}

static int vm(pid_t pid, uint64_t addr, void *buf, size_t len, int write)
{
    if (len == 0) return 0;
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    ssize_t n = write ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
                      : process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0) return -errno;
    return (size_t)n == len ? 0 : -EFAULT;
}

int tg_read(pid_t pid, uint64_t addr, void *buf, size_t len) { return vm(pid, addr, buf, len, 0); }

int tg_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
    return vm(pid, addr, (void *)buf, len, 1);
}

int tg_poke(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = pwrite(fd, buf, len, (off_t)addr);
    int e = errno;
    close(fd);
    if (n < 0) return -e;
    return (size_t)n == len ? 0 : -EFAULT;
}

int tg_valid(int nfd, uint64_t id) { return ioctl(nfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0; }

int tg_addfd_reply(int nfd, uint64_t id, int srcfd, int cloexec)
{
    struct seccomp_notif_addfd a;
    memset(&a, 0, sizeof a);
    a.id = id;
    a.flags = SECCOMP_ADDFD_FLAG_SEND; /* add and answer atomically (5.14) */
    a.srcfd = (uint32_t)srcfd;
    a.newfd_flags = cloexec ? O_CLOEXEC : 0;
    int r = ioctl(nfd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
    if (r >= 0) return r;
    if (errno != EINVAL) return -errno;
    a.flags = 0; /* 5.9 .. 5.13: add, then answer with the number */
    r = ioctl(nfd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
    if (r < 0) return -errno;
    tg_reply(nfd, id, r, 0);
    return r;
}

void tg_reply(int nfd, uint64_t id, int64_t val, int err)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.val = err ? 0 : val;
    resp.error = err ? -err : 0;
    ioctl(nfd, SECCOMP_IOCTL_NOTIF_SEND, &resp); /* ENOENT: the target went away meanwhile */
}

void tg_continue(int nfd, uint64_t id)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(nfd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

int tg_put_sockaddr(pid_t pid, uint64_t addr, uint64_t addrlen, const void *ss, uint32_t sl)
{
    if (!addr) return 0;
    if (!addrlen) return -EFAULT;
    uint32_t cap;
    int r = tg_read(pid, addrlen, &cap, sizeof cap);
    if (r) return r;
    if ((int32_t)cap < 0) return -EINVAL;
    /* The address, then its length, in one call (a stopped accept or getsockname makes this
     * write on every connection). */
    size_t n = cap < sl ? cap : sl;
    struct iovec local[2] = {{(void *)ss, n}, {&sl, sizeof sl}};
    struct iovec remote[2] = {{(void *)(uintptr_t)addr, n}, {(void *)(uintptr_t)addrlen, sizeof sl}};
    ssize_t w = process_vm_writev(pid, local, 2, remote, 2, 0); /* (an empty iovec is skipped) */
    if (w < 0) return -errno;
    return (size_t)w == n + sizeof sl ? 0 : -EFAULT;
}
