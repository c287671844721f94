/* netio.c: clocks, randomness, deadline-bounded I/O and sockaddr helpers (see netio.h). */
#include "common/netio.h"
#include "common/real.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int random_bytes(void *buf, size_t n)
{
    size_t got = 0;
    for (int tries = 0; got < n && tries < 100; tries++) {
        ssize_t r = getrandom((char *)buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return got == n ? 0 : -EIO;
}

int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) return 0;
        struct pollfd p = {fd, events, 0};
        int r = real.poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r < 0) {
            if (errno == EINTR) continue; /* bounded: the deadline still applies */
            return -errno;
        }
        if (r > 0) return p.revents ? p.revents : events;
    }
}

int send_all(int fd, const void *buf, size_t n, int64_t deadline)
{
    const char *p = buf;
    while (n) {
        ssize_t w = real.send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r == 0) return -ETIMEDOUT;
        if (r < 0) return r;
    }
    return 0;
}

int recv_exact(int fd, void *buf, size_t n, int64_t deadline)
{
    char *p = buf;
    while (n) {
        ssize_t r = real.recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) return NETIO_EOF;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int w = wait_fd(fd, POLLIN, deadline);
        if (w == 0) return -ETIMEDOUT;
        if (w < 0) return w;
    }
    return 0;
}

int sa_get_v4(const struct sockaddr *sa, socklen_t len, uint32_t *ip, uint16_t *port)
{
    if (!sa || len < (socklen_t)sizeof(sa_family_t)) return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        *ip = ntohl(s->sin_addr.s_addr);
        *port = ntohs(s->sin_port);
        return 1;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        if (!IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) return 0;
        uint32_t a;
        memcpy(&a, &s->sin6_addr.s6_addr[12], 4);
        *ip = ntohl(a);
        *port = ntohs(s->sin6_port);
        return 1;
    }
    return 0;
}

int sa_port(const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return -1;
}

socklen_t sa_make_v4(int family, uint32_t ip, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        s->sin6_addr.s6_addr[10] = 0xff;
        s->sin6_addr.s6_addr[11] = 0xff;
        uint32_t a = htonl(ip);
        memcpy(&s->sin6_addr.s6_addr[12], &a, 4);
        return sizeof *s;
    }
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    s->sin_addr.s_addr = htonl(ip);
    return sizeof *s;
}

void sa_copy_out(const void *src, socklen_t len, struct sockaddr *addr, socklen_t *addrlen)
{
    if (!addr || !addrlen) return;
    socklen_t n = *addrlen < len ? *addrlen : len;
    if ((int)n > 0) memcpy(addr, src, n);
    *addrlen = len;
}

const char *ip_str(uint32_t ip, char buf[16])
{
    snprintf(buf, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
    return buf;
}
