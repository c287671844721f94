/* adopt.c: taking a socket over from Deno. Deno gives no access to a connection's descriptor,
 * and its close() shuts the socket down (shutdown(SHUT_WR), then EPOLL_CTL_DEL, then close).
 * So the data plane finds the descriptor by the connection's two addresses (unique among live
 * sockets), duplicates it, removes it from Deno's epoll sets itself, and puts an unconnected
 * socket of its own under the old descriptor number (dup3): Deno's close then shuts down and
 * closes that stand-in, and the connection lives on, unchanged, in the duplicate. The control
 * plane must have no read or write in flight on the connection (it has none: it adopts right
 * after its last read completed). */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EPOLLS 32
static int deno_epolls[MAX_EPOLLS], n_epolls;
static int max_fd_seen = 64;

/* Deno's epoll instances: every eventpoll descriptor of the process but ours. */
static void find_epolls(dp *d)
{
    n_epolls = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)) && n_epolls < MAX_EPOLLS) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = 0;
        int fd = atoi(e->d_name);
        if (strcmp(target, "anon_inode:[eventpoll]") == 0 && fd != d->ep) deno_epolls[n_epolls++] = fd;
    }
    closedir(dir);
}

void dp_adopt_init(dp *d)
{
    find_epolls(d);
    d->dummy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

socklen_t sockaddr_text(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    return 0;
}

int addr16_text(const char *s, uint16_t port, addr16 *out)
{
    memset(out, 0, sizeof *out);
    out->port = port;
    struct in_addr v4;
    if (inet_pton(AF_INET, s, &v4) == 1) {
        out->a[10] = out->a[11] = 0xff;
        memcpy(out->a + 12, &v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, s, out->a) == 1 ? 0 : -1;
}

int addr16_sock(const struct sockaddr_storage *ss, addr16 *out)
{
    memset(out, 0, sizeof *out);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)ss;
        out->a[10] = out->a[11] = 0xff;
        memcpy(out->a + 12, &v4->sin_addr, 4);
        out->port = ntohs(v4->sin_port);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)ss;
        memcpy(out->a, &v6->sin6_addr, 16);
        out->port = ntohs(v6->sin6_port);
        return 0;
    }
    return -1;
}

static int same(const addr16 *x, const addr16 *y) { return x->port == y->port && memcmp(x->a, y->a, 16) == 0; }

static int matches(int fd, const addr16 *local, const addr16 *remote)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    addr16 got;
    if (getpeername(fd, (struct sockaddr *)&ss, &l) != 0 || addr16_sock(&ss, &got) != 0 || !same(&got, remote)) return 0;
    l = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &l) != 0 || addr16_sock(&ss, &got) != 0 || !same(&got, local)) return 0;
    return 1;
}

/* The descriptor in 0 … limit with these addresses, or -1. The search starts at the last one
 * found and goes outwards: Deno's new connection takes the lowest free number, which is near the
 * last one's (a scan from 0 made two system calls per open descriptor, hundreds per connection
 * on a busy router). */
static int last_found;

static int find_fd(const addr16 *local, const addr16 *remote, int limit)
{
    int hint = last_found <= limit ? last_found : 0;
    for (int d = 0; hint - d >= 0 || hint + d <= limit; d++) {
        if (hint + d <= limit && matches(hint + d, local, remote)) return last_found = hint + d;
        if (d && hint - d >= 0 && matches(hint - d, local, remote)) return last_found = hint - d;
    }
    return -1;
}

int dp_adopt_fd(dp *d, const uint8_t *p, size_t n)
{
    /* lport u16, rport u16, "local host\0remote host\0" */
    if (n < 6 || p[n - 1] != 0) return -EINVAL;
    const char *lh = (const char *)p + 4;
    size_t ll = strnlen(lh, n - 4);
    if (4 + ll + 1 >= n) return -EINVAL;
    const char *rh = lh + ll + 1;
    addr16 local, remote;
    if (addr16_text(lh, get16(p), &local) != 0 || addr16_text(rh, get16(p + 2), &remote) != 0) return -EINVAL;
    int fd = find_fd(&local, &remote, max_fd_seen + 256);
    if (fd < 0) {
        struct rlimit rl;
        int limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1 << 20 ? (int)rl.rlim_cur : 1 << 16;
        fd = find_fd(&local, &remote, limit);
        if (fd < 0) return -ENOENT;
    }
    int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mine < 0) return -errno;
    if (mine > max_fd_seen) max_fd_seen = mine;
    if (fd > max_fd_seen) max_fd_seen = fd;
    int removed = 0;
    for (int pass = 0; pass < 2 && !removed; pass++) {
        if (pass == 1) find_epolls(d);
        for (int i = 0; i < n_epolls; i++)
            if (epoll_ctl(deno_epolls[i], EPOLL_CTL_DEL, fd, NULL) == 0) removed = 1;
    }
    if (d->dummy < 0 || dup3(d->dummy, fd, O_CLOEXEC) < 0) {
        /* Cannot stand in for it: give the duplicate back; Deno keeps the connection. */
        close(mine);
        return -EBADF;
    }
    return mine;
}
