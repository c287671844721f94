/* nlroute.c: rtnetlink answers about the overlay's interfaces (ifaces.h): RTM_GETLINK and
 * RTM_GETADDR, dumps (NLM_F_DUMP, as glibc, iproute2, libnl, Go and busybox issue them) and
 * single-link requests (by index or IFLA_IFNAME), and the queue of replies waiting on netlink
 * sockets. The replies are laid out as the kernel lays them out: NLM_F_MULTI messages with
 * the request's sequence number and the socket's port id, closed by NLMSG_DONE. */
#include "uvpn/core/ifaces.h"
#include "common/netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef AF_PACKET
#define AF_PACKET 17
#endif
/* RFC 2863 operational states (linux/if.h, which clashes with net/if.h). */
#define IF_OPER_UNKNOWN 0
#define IF_OPER_UP 6
#define NLQ_STALE_MS 30000 /* a reply nobody read for this long is dropped (its socket is gone) */

int ifv_nl_is_request(const void *buf, size_t len)
{
    struct nlmsghdr h;
    if (!buf || len < sizeof h) return 0;
    memcpy(&h, buf, sizeof h);
    return h.nlmsg_len >= NLMSG_LENGTH(1) && h.nlmsg_len <= len && (h.nlmsg_flags & NLM_F_REQUEST) &&
           (h.nlmsg_type == RTM_GETLINK || h.nlmsg_type == RTM_GETADDR);
}

/* ---- building messages --------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t cap, len;
    int overflow;
} nlbuf;

/* Starts a message of type with a zeroed body of blen bytes; returns its offset. */
static size_t msg_begin(nlbuf *b, int type, int flags, uint32_t seq, uint32_t pid, size_t blen)
{
    size_t off = b->len, need = NLMSG_SPACE(blen);
    if (b->overflow || off + need > b->cap) {
        b->overflow = 1;
        return off;
    }
    memset(b->p + off, 0, need);
    struct nlmsghdr h = {(uint32_t)NLMSG_LENGTH(blen), (uint16_t)type, (uint16_t)flags, seq, pid};
    memcpy(b->p + off, &h, sizeof h);
    b->len += need;
    return off;
}

static void *body(nlbuf *b, size_t off) { return b->p + off + NLMSG_HDRLEN; }

static void attr(nlbuf *b, size_t msg, int type, const void *data, size_t n)
{
    size_t need = RTA_SPACE(n);
    if (b->overflow || b->len + need > b->cap) {
        b->overflow = 1;
        return;
    }
    struct rtattr a = {(unsigned short)RTA_LENGTH(n), (unsigned short)type};
    memset(b->p + b->len, 0, need);
    memcpy(b->p + b->len, &a, sizeof a);
    memcpy(b->p + b->len + RTA_LENGTH(0), data, n);
    b->len += need;
    struct nlmsghdr h;
    memcpy(&h, b->p + msg, sizeof h);
    h.nlmsg_len = (uint32_t)(b->len - msg);
    memcpy(b->p + msg, &h, sizeof h);
}

static void attr_u32(nlbuf *b, size_t msg, int type, uint32_t v) { attr(b, msg, type, &v, sizeof v); }

static void link_msg(nlbuf *b, const ifv_link *l, int flags, uint32_t seq, uint32_t pid)
{
    size_t m = msg_begin(b, RTM_NEWLINK, flags, seq, pid, sizeof(struct ifinfomsg));
    if (b->overflow) return;
    struct ifinfomsg ifi = {AF_UNSPEC, 0, l->type, l->index, l->flags, 0};
    memcpy(body(b, m), &ifi, sizeof ifi);
    attr(b, m, IFLA_IFNAME, l->name, strlen(l->name) + 1);
    attr_u32(b, m, IFLA_MTU, (uint32_t)l->mtu);
    attr_u32(b, m, IFLA_TXQLEN, l->loopback ? 1000 : 500);
    uint8_t oper = l->loopback ? IF_OPER_UNKNOWN : IF_OPER_UP, mode = 0;
    attr(b, m, IFLA_OPERSTATE, &oper, 1);
    attr(b, m, IFLA_LINKMODE, &mode, 1);
    if (l->loopback) {
        static const uint8_t zero[6];
        attr(b, m, IFLA_ADDRESS, zero, sizeof zero);
        attr(b, m, IFLA_BROADCAST, zero, sizeof zero);
    }
}

static void addr_msg(nlbuf *b, const ifv_link *l, int family, uint32_t seq, uint32_t pid)
{
    size_t m = msg_begin(b, RTM_NEWADDR, NLM_F_MULTI, seq, pid, sizeof(struct ifaddrmsg));
    if (b->overflow) return;
    int v6 = family == AF_INET6, plen = 0;
    for (uint32_t k = l->mask; !v6 && k & 0x80000000u; k <<= 1) plen++;
    struct ifaddrmsg ifa = {(uint8_t)family, (uint8_t)(v6 ? 128 : plen), IFA_F_PERMANENT,
                            (uint8_t)(l->loopback ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE), (uint32_t)l->index};
    memcpy(body(b, m), &ifa, sizeof ifa);
    if (v6) {
        struct in6_addr one = IN6ADDR_LOOPBACK_INIT;
        attr(b, m, IFA_ADDRESS, &one, sizeof one);
        return;
    }
    uint32_t a = htonl(l->addr);
    attr(b, m, IFA_ADDRESS, &a, 4);
    attr(b, m, IFA_LOCAL, &a, 4);
    if (!(l->flags & IFF_LOOPBACK)) {
        uint32_t bc = htonl((l->addr & l->mask) | ~l->mask);
        attr(b, m, IFA_BROADCAST, &bc, 4);
    }
    attr(b, m, IFA_LABEL, l->name, strlen(l->name) + 1);
    struct ifa_cacheinfo ci = {0xffffffffu, 0xffffffffu, 0, 0};
    attr(b, m, IFA_CACHEINFO, &ci, sizeof ci);
}

static void done_msg(nlbuf *b, uint32_t seq, uint32_t pid)
{
    size_t m = msg_begin(b, NLMSG_DONE, NLM_F_MULTI, seq, pid, sizeof(int));
    (void)m;
}

static void error_msg(nlbuf *b, const struct nlmsghdr *req, int err, uint32_t pid)
{
    size_t m = msg_begin(b, NLMSG_ERROR, 0, req->nlmsg_seq, pid, sizeof(struct nlmsgerr));
    if (b->overflow) return;
    struct nlmsgerr e;
    memset(&e, 0, sizeof e);
    e.error = -err;
    e.msg = *req;
    memcpy(body(b, m), &e, sizeof e);
}

/* The link a single RTM_GETLINK names: by ifi_index, else by IFLA_IFNAME. */
static const ifv_link *named_link(const ifv_view *v, const uint8_t *req, size_t len, int *named)
{
    struct ifinfomsg ifi;
    memset(&ifi, 0, sizeof ifi);
    size_t hl = NLMSG_HDRLEN, bl = len > hl ? len - hl : 0;
    memcpy(&ifi, req + hl, bl < sizeof ifi ? bl : sizeof ifi);
    *named = 1;
    if (ifi.ifi_index) return ifv_by_index(v, ifi.ifi_index);
    size_t off = hl + NLMSG_ALIGN(sizeof ifi);
    while (off + RTA_LENGTH(0) <= len) {
        struct rtattr a;
        memcpy(&a, req + off, sizeof a);
        if (a.rta_len < RTA_LENGTH(0) || off + a.rta_len > len) break;
        if (a.rta_type == IFLA_IFNAME) {
            char name[IFNAMSIZ + 1] = "";
            size_t n = a.rta_len - RTA_LENGTH(0);
            memcpy(name, req + off + RTA_LENGTH(0), n < IFNAMSIZ ? n : IFNAMSIZ);
            return ifv_by_name(v, name);
        }
        off += RTA_ALIGN(a.rta_len);
    }
    *named = 0;
    return NULL;
}

int ifv_nl_answer(const ifv_view *v, const uint8_t *req, size_t len, uint32_t portid, uint8_t *out,
                  size_t cap, size_t *out_len, int *to_kernel)
{
    if (!ifv_nl_is_request(req, len)) return 0;
    struct nlmsghdr h;
    memcpy(&h, req, sizeof h);
    len = h.nlmsg_len;
    uint8_t family = len > NLMSG_HDRLEN ? req[NLMSG_HDRLEN] : AF_UNSPEC;
    nlbuf b = {out, cap, 0, 0};
    *to_kernel = 0;
    if (!(h.nlmsg_flags & NLM_F_DUMP)) {
        if (h.nlmsg_type != RTM_GETLINK) return 0; /* a single address: the kernel's business */
        int named;
        const ifv_link *l = named_link(v, req, len, &named);
        if (!named || (!l && v->real)) return 0;
        if (l) link_msg(&b, l, 0, h.nlmsg_seq, portid);
        else error_msg(&b, &h, ENODEV, portid);
    } else {
        for (int i = 0; i < v->n; i++) {
            const ifv_link *l = &v->l[i];
            if (h.nlmsg_type == RTM_GETLINK) link_msg(&b, l, NLM_F_MULTI, h.nlmsg_seq, portid);
            if (h.nlmsg_type == RTM_GETADDR && (family == AF_UNSPEC || family == AF_INET || family == AF_PACKET))
                addr_msg(&b, l, AF_INET, h.nlmsg_seq, portid);
        }
        for (int i = 0; h.nlmsg_type == RTM_GETADDR && i < v->n; i++)
            if (v->l[i].loopback && (family == AF_UNSPEC || family == AF_INET6))
                addr_msg(&b, &v->l[i], AF_INET6, h.nlmsg_seq, portid);
        if (v->real) *to_kernel = 1; /* the kernel's dump follows and closes it */
        else done_msg(&b, h.nlmsg_seq, portid);
    }
    if (b.overflow) return 0;
    *out_len = b.len;
    return 1;
}

/* ---- replies waiting on sockets ------------------------------------------------------------ */

#define NLQ_MAX 64

static struct {
    uint64_t ino;
    uint8_t *d;
    size_t len;
    int64_t at;
} q[NLQ_MAX];
static atomic_int pending;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int ifv_nlq_put(uint64_t ino, const uint8_t *d, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    if (!c) return -ENOMEM;
    memcpy(c, d, len);
    int slot = -1;
    int64_t now = mono_ms();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < NLQ_MAX; i++)
        if (q[i].d && q[i].ino != ino && now - q[i].at > NLQ_STALE_MS) {
            free(q[i].d);
            q[i].d = NULL;
            atomic_fetch_sub(&pending, 1);
        }
    for (int i = 0; i < NLQ_MAX && slot < 0; i++)
        if (q[i].d && q[i].ino == ino) slot = i;
    for (int i = 0; i < NLQ_MAX && slot < 0; i++)
        if (!q[i].d) slot = i;
    if (slot >= 0) {
        if (q[slot].d) free(q[slot].d);
        else atomic_fetch_add(&pending, 1);
        q[slot].ino = ino;
        q[slot].d = c;
        q[slot].len = len;
        q[slot].at = now;
    }
    pthread_mutex_unlock(&lock);
    if (slot < 0) free(c);
    return slot < 0 ? -ENOSPC : 0;
}

int ifv_nlq_pending(void) { return atomic_load_explicit(&pending, memory_order_relaxed); }

long ifv_nlq_take(uint64_t ino, uint8_t *out, size_t cap, int peek, size_t *full)
{
    long r = -1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < NLQ_MAX; i++) {
        if (!q[i].d || q[i].ino != ino) continue;
        size_t n = q[i].len < cap ? q[i].len : cap;
        if (n) memcpy(out, q[i].d, n);
        *full = q[i].len;
        r = (long)n;
        if (!peek) {
            free(q[i].d);
            q[i].d = NULL;
            atomic_fetch_sub(&pending, 1);
        }
        break;
    }
    pthread_mutex_unlock(&lock);
    return r;
}
