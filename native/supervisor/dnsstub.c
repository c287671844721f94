/* dnsstub.c: the supervisor's DNS stub (see dnsstub.h). One UDP socket on 127.0.0.1; each query
 * is handled in a short-lived thread (a router round trip or a forward may take seconds, and
 * resolvers send A and AAAA at once). Queries are parsed with explicit bounds: a malformed one
 * gets FORMERR (logged under UVPN_DEBUG). */
#include "supervisor/dnsstub.h"
#include "common/bytes.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "uvpn/core/names.h"
#include "common/netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FORWARD_MS 5000   /* how long a forwarded query waits for the real nameserver */
#define MAX_INFLIGHT 64   /* queries handled at once; more are dropped (resolvers retry) */
#define TTL 5             /* seconds, as long as routers keep peer answers */
#define DNS_MAX 65535

enum { T_A = 1, T_PTR = 12, T_AAAA = 28, T_ANY = 255, C_IN = 1 };
enum { RC_OK = 0, RC_FORMERR = 1, RC_SERVFAIL = 2, RC_NXDOMAIN = 3 };

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int stub_fd = -1;
static uint16_t stub_port;
static atomic_int inflight;

/* The nameserver each redirected socket asked for, by its local port (all are on loopback). */
typedef union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} nsaddr;
static nsaddr *ns_by_port; /* 65536 entries, family 0: none */
static pthread_mutex_t ns_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- parsing and answering ---------------------------------------------------------------- */

typedef struct {
    char name[256];     /* dotted, without the final dot */
    size_t len;
    size_t end;         /* offset just past QTYPE/QCLASS */
    uint16_t type, cls;
} question;


/* Parses the one question at offset 12. 0, or a reason. */
static const char *parse_question(const uint8_t *q, size_t n, question *out)
{
    size_t off = 12, len = 0;
    for (;;) {
        if (off >= n) return "name runs past the end";
        uint8_t l = q[off++];
        if (l == 0) break;
        if (l & 0xc0) return "compressed or extended label in the question";
        if (off + l > n) return "label runs past the end";
        if (len + l + 1 > 255) return "name longer than 255 bytes";
        if (len) out->name[len++] = '.';
        memcpy(out->name + len, q + off, l);
        len += l;
        off += l;
    }
    if (off + 4 > n) return "question without type and class";
    out->name[len] = 0;
    out->len = len;
    out->type = get16(q + off);
    out->cls = get16(q + off + 2);
    out->end = off + 4;
    return NULL;
}

/* A response header and the question copied from q; returns the offset after it. */
static size_t begin_reply(const uint8_t *q, size_t qend, uint8_t *out, int rcode, int answers)
{
    memcpy(out, q, qend);
    out[2] = (uint8_t)(0x80 | (q[2] & 0x79) | 0x04); /* QR, opcode and RD kept, AA */
    out[3] = (uint8_t)(0x80 | rcode);                  /* RA */
    put16(out + 4, 1);
    put16(out + 6, (uint16_t)answers);
    put16(out + 8, 0);
    put16(out + 10, 0);
    return qend;
}

/* One answer record for the question's name (pointer to offset 12). */
static size_t add_rr(uint8_t *p, uint16_t type, const uint8_t *rdata, uint16_t rdlen)
{
    put16(p, 0xc00c);
    put16(p + 2, type);
    put16(p + 4, C_IN);
    put16(p + 6, 0);
    put16(p + 8, TTL);
    put16(p + 10, rdlen);
    memcpy(p + 12, rdata, rdlen);
    return 12 + (size_t)rdlen;
}

static long formerr(const uint8_t *q, size_t n, uint8_t *out, const char *why)
{
    dbg("dns: malformed query (%zu bytes): %s", n, why);
    uint8_t h[12] = {0};
    memcpy(h, q, n < 2 ? n : 2);
    if (n >= 3) h[2] = q[2];
    begin_reply(h, 12, out, RC_FORMERR, 0);
    put16(out + 4, 0);
    return 12;
}

/* The IPv4 address (host order) of a name "d.c.b.a.in-addr.arpa"; 1 or 0. */
static int reverse_v4(const char *name, uint32_t *ip)
{
    static const char arpa[] = ".in-addr.arpa";
    size_t n = strlen(name), al = sizeof arpa - 1;
    if (n <= al || strcasecmp(name + n - al, arpa) != 0) return 0;
    uint32_t v = 0;
    const char *p = name;
    for (int i = 0; i < 4; i++) {
        if (*p < '0' || *p > '9') return 0;
        unsigned long b = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) b = b * 10 + (unsigned long)(*p++ - '0'), digits++;
        if (b > 255 || *p != '.') return 0;
        p++;
        v |= (uint32_t)b << (8 * i);
    }
    *ip = v;
    return p == name + n - al + 1;
}

long dns_answer(const uint8_t *q, size_t n, uint8_t *out, size_t cap)
{
    if (n < 12) return n >= 2 ? formerr(q, n, out, "shorter than a header") : -1;
    if (q[2] & 0x80) return -1;                  /* a response, not a query */
    if (((q[2] >> 3) & 0x0f) != 0) return 0;     /* not a standard query: not ours */
    if (get16(q + 4) != 1) return formerr(q, n, out, "question count is not 1");
    question qu;
    const char *why = parse_question(q, n, &qu);
    if (why) return formerr(q, n, out, why);
    if (qu.cls != C_IN || cap < 512) return 0;
    uint32_t ip;
    char canon[UVPN_NAME_MAX + 1], name[UVPN_NAME_MAX + sizeof NM_SUFFIX];
    if (qu.type == T_PTR && reverse_v4(qu.name, &ip)) {
        int r = nm_lookup_addr(ip, name);
        if (r == NM_NOT_OVERLAY) return 0;
        if (r != NM_FOUND) return (long)begin_reply(q, qu.end, out, r == NM_DOWN ? RC_SERVFAIL : RC_NXDOMAIN, 0);
        strcat(name, NM_SUFFIX);
        uint8_t rd[2 + UVPN_NAME_MAX + sizeof NM_SUFFIX], *p = rd;
        for (char *s = name, *dot; s; s = dot ? dot + 1 : NULL) { /* labels */
            dot = strchr(s, '.');
            size_t l = dot ? (size_t)(dot - s) : strlen(s);
            *p++ = (uint8_t)l;
            memcpy(p, s, l);
            p += l;
        }
        *p++ = 0;
        size_t off = begin_reply(q, qu.end, out, RC_OK, 1);
        return (long)(off + add_rr(out + off, T_PTR, rd, (uint16_t)(p - rd)));
    }
    int r = nm_lookup(qu.name, qu.len, &ip, canon);
    if (r == NM_NOT_OVERLAY) return 0;
    if (r != NM_FOUND) return (long)begin_reply(q, qu.end, out, r == NM_DOWN ? RC_SERVFAIL : RC_NXDOMAIN, 0);
    if (qu.type != T_A && qu.type != T_ANY) /* overlay names have IPv4 addresses only */
        return (long)begin_reply(q, qu.end, out, RC_OK, 0);
    uint8_t a[4];
    put32(a, ip);
    size_t off = begin_reply(q, qu.end, out, RC_OK, 1);
    return (long)(off + add_rr(out + off, T_A, a, 4));
}

/* ---- the stub ----------------------------------------------------------------------------- */

typedef struct {
    struct sockaddr_in from;
    size_t n;
    uint8_t q[];
} query;

/* Sends q to the real nameserver ns and its reply (same id) into out. Length or -errno. */
static long forward(const nsaddr *ns, const uint8_t *q, size_t n, uint8_t *out, size_t cap)
{
    int fam = ns->v4.sin_family;
    int fd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    long r = -ETIMEDOUT;
    socklen_t sl = fam == AF_INET ? sizeof ns->v4 : sizeof ns->v6;
    if (connect(fd, (const struct sockaddr *)ns, sl) || send(fd, q, n, 0) < 0) {
        r = -errno;
        goto out;
    }
    for (int64_t deadline = mono_ms() + FORWARD_MS;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            r = w < 0 ? w : -ETIMEDOUT;
            break;
        }
        ssize_t got = recv(fd, out, cap, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got < 0) {
            r = -errno; /* ECONNREFUSED: nothing listens there */
            break;
        }
        if (got >= 12 && out[0] == q[0] && out[1] == q[1]) {
            r = got;
            break;
        }
    }
out:
    close(fd);
    return r;
}

static void *handle(void *arg)
{
    query *qq = arg;
    uint8_t *out = malloc(DNS_MAX);
    long n = out ? dns_answer(qq->q, qq->n, out, DNS_MAX) : -1;
    if (n == 0) {
        nsaddr ns;
        pthread_mutex_lock(&ns_lock);
        ns = ns_by_port[ntohs(qq->from.sin_port)];
        pthread_mutex_unlock(&ns_lock);
        if (ns.v4.sin_family == 0) {
            dbg("dns: query from unknown port %u dropped", ntohs(qq->from.sin_port));
            n = -1;
        } else {
            n = forward(&ns, qq->q, qq->n, out, DNS_MAX);
            if (n < 0) dbg("dns: forwarding a query: %s", strerror((int)-n));
        }
    }
    if (n > 0) sendto(stub_fd, out, (size_t)n, 0, (struct sockaddr *)&qq->from, sizeof qq->from);
    free(out);
    free(qq);
    atomic_fetch_sub(&inflight, 1);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    uint8_t *buf = malloc(DNS_MAX);
    for (; buf;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(stub_fd, buf, DNS_MAX, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EINTR) continue;
            dbg("dns: stub stops: %s", strerror(errno));
            break;
        }
        query *qq = atomic_load(&inflight) < MAX_INFLIGHT ? malloc(sizeof *qq + (size_t)n) : NULL;
        if (!qq) continue;
        qq->from = from;
        qq->n = (size_t)n;
        memcpy(qq->q, buf, (size_t)n);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        atomic_fetch_add(&inflight, 1);
        if (pthread_create(&t, &at, handle, qq)) {
            atomic_fetch_sub(&inflight, 1);
            free(qq);
        }
        pthread_attr_destroy(&at);
    }
    free(buf);
    return NULL;
}

static void start(void)
{
    ns_by_port = calloc(65536, sizeof *ns_by_port);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (!ns_by_port || fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        dbg("dns: cannot start the stub: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    stub_fd = fd;
    if (pthread_create(&t, &at, serve, NULL)) {
        dbg("dns: cannot start the stub: %s", strerror(errno));
        stub_fd = -1;
        close(fd);
    } else {
        stub_port = ntohs(a.sin_port);
        dbg("dns: stub at 127.0.0.1:%u", stub_port);
    }
    pthread_attr_destroy(&at);
}

int dns_redirect(int fd, const struct sockaddr *ns, socklen_t len, uint16_t *lport)
{
    pthread_once(&once, start);
    if (stub_fd < 0) return -ENETDOWN;
    if (sa_port(ns, len) < 0) return -EAFNOSUPPORT;
    struct sockaddr_storage ss, me;
    socklen_t sl = sa_make_v4(ns->sa_family, INADDR_LOOPBACK, stub_port, &ss), ml = sizeof me; /* v4-mapped for IPv6 */
    if (connect(fd, (struct sockaddr *)&ss, sl) || getsockname(fd, (struct sockaddr *)&me, &ml))
        return -errno;
    *lport = (uint16_t)sa_port((struct sockaddr *)&me, ml);
    nsaddr a;
    memset(&a, 0, sizeof a);
    memcpy(&a, ns, ns->sa_family == AF_INET ? sizeof a.v4 : sizeof a.v6);
    pthread_mutex_lock(&ns_lock);
    ns_by_port[*lport] = a;
    pthread_mutex_unlock(&ns_lock);
    return 0;
}

int dns_peer(int fd, uint16_t lport, struct sockaddr_storage *ss, socklen_t *sl)
{
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (stub_fd < 0 || getpeername(fd, (struct sockaddr *)&peer, &pl) || sa_port((struct sockaddr *)&peer, pl) != stub_port)
        return 0;
    pthread_mutex_lock(&ns_lock);
    nsaddr a = ns_by_port[lport];
    pthread_mutex_unlock(&ns_lock);
    if (a.v4.sin_family == 0) return 0;
    memset(ss, 0, sizeof *ss);
    *sl = a.v4.sin_family == AF_INET ? sizeof a.v4 : sizeof a.v6;
    memcpy(ss, &a, *sl);
    return 1;
}
