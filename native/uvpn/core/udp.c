/* udp.c: UDP over the overlay (see udp.h). */
#include "uvpn/core/udp.h"
#include "common/bytes.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/engine.h"
#include "uvpn/core/policy.h"
#include "common/real.h"
#include "common/wire.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define UNREGISTER_MS 1000
#define IOV_STACK 64

/* UDPBIND {ip, vport, real_port[, flags]}: direct, the socket takes datagrams from any sender
 * with the key (it is not connected to the router), so senders of the site may send to it
 * directly (UDPBIND flag DIRECT, docs/PROTOCOL.md). 0 or -errno (the reason logged). */
static int udpbind(uint32_t ip, uint16_t vport, uint16_t real_port, int direct, int timeout_ms)
{
    uint8_t body[9];
    put32(body, ip);
    put16(body + 4, vport);
    put16(body + 6, real_port);
    body[8] = direct ? UVPN_LF_DIRECT : 0;
    char why[256] = "", a[24];
    size_t n;
    size_t len = real_port ? sizeof body : 8;
    int st = ov_control(UVPN_T_UDPBIND, body, len, NULL, 0, &n, timeout_ms, why, sizeof why);
    fmt_addr(ip, vport, a);
    if (st == 0) {
        dbg("udp %s: %s with the home router (real port %u)", a, real_port ? "registered" : "unregistered",
            real_port);
        if (real_port) eng_keep(UVPN_T_UDPBIND, body, len);
        return 0;
    }
    int e = st < 0 ? -st : uvpn_status_to_errno(st);
    dbg("udp %s: %s (%s)", a, why, errno_name(e));
    return -e;
}

/* Registers st (VS_UDP, lip:lport at real_port) with the home router. 0 or -errno. */
static int udp_register(vinfo *st)
{
    int r = udpbind(st->lip, st->lport, st->real_port, !cfg()->direct_never, cfg()->timeout_ms);
    if (r == 0) {
        st->registered = 1;
        st->owner = getpid();
    }
    return r < 0 && r != -EACCES ? -ENETUNREACH : r;
}

/* A fresh, registered UDP state for fd (bound to an ephemeral port first if unbound). */
static int udp_fresh(int fd, vinfo *st)
{
    const struct cfg *c = cfg();
    if (!c->have_src || !c->have_proxy) {
        dbg("udp: %s not set (ENETUNREACH)", !c->have_src ? "UVPN_SRC_ADDR" : "UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT");
        return -ENETUNREACH;
    }
    int family = pol_sockopt_int(fd, SO_DOMAIN);
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    uint16_t rp = pol_real_port(fd);
    if (rp == 0) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_family = (sa_family_t)family;
        if (real.bind(fd, (struct sockaddr *)&ss,
                      family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) &&
            errno != EINVAL)
            return -errno;
        rp = pol_real_port(fd);
    }
    vinfo n = {.kind = VS_UDP, .family = family, .lip = c->src, .lport = rp, .real_port = rp};
    *st = n;
    return udp_register(st);
}

/* The home router's UDP address in the socket's family. 0 or -ENETUNREACH. */
static int router_addr(const vinfo *st, struct sockaddr_storage *ss, socklen_t *sl)
{
    uint32_t ip;
    if (cfg_router_ips(&ip, 1) <= 0) return -ENETUNREACH;
    *sl = sa_make_v4(st->family, ip, cfg()->proxy_port, ss);
    return 0;
}

int pol_udp_bind(int fd, const struct sockaddr *addr, socklen_t len, uint32_t ip, uint16_t port,
                 int any, vinfo *out)
{
    const struct cfg *c = cfg();
    if (any ? !c->have_src : !cfg_is_virtual(ip)) return 0;
    if (any && c->bind_any_virtual) any = 0, ip = c->src; /* virtual-only, as a bind to the address */
    char a[24];
    fmt_addr(ip, port, a);
    if (!any && (!c->have_src || ip != c->src)) {
        dbg("bind %s: not this process's virtual address (EADDRNOTAVAIL)", a);
        return -EADDRNOTAVAIL;
    }
    int family = addr->sa_family;
    if (any) {
        if (real.bind(fd, addr, len)) return -errno;
    } else {
        /* Really the wildcard with an ephemeral port: the router delivers to it. */
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_family = (sa_family_t)family;
        if (real.bind(fd, (struct sockaddr *)&ss,
                      family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)))
            return -errno;
    }
    uint16_t rp = pol_real_port(fd);
    vinfo n = {.kind = VS_UDP, .family = family, .lip = c->src, .lport = any || !port ? rp : port,
               .real_port = rp};
    int r = c->have_proxy ? udp_register(&n) : -ENETUNREACH;
    if (r && !any) return r;
    if (r) dbg("bind %s: UDP stays native until its first send to a virtual address", a);
    *out = n;
    return 1;
}

int pol_udp_connect(int fd, uint32_t ip, uint16_t port, int has, const vinfo *prev, vinfo *out)
{
    vinfo st;
    int r = 0;
    if (has && prev->kind == VS_UDP) {
        st = *prev;
        if (!st.registered) r = udp_register(&st);
    } else {
        r = udp_fresh(fd, &st);
    }
    struct sockaddr_storage ra;
    socklen_t rl;
    if (r == 0) r = router_addr(&st, &ra, &rl);
    if (r == 0 && real.connect(fd, (struct sockaddr *)&ra, rl)) r = -ENETUNREACH;
    /* Connected to the router, the kernel takes datagrams from there only: senders must not
     * send to it directly any more. */
    if (r == 0 && !cfg()->direct_never) r = udpbind(st.lip, st.lport, st.real_port, 0, cfg()->timeout_ms) ? -ENETUNREACH : 0;
    char a[24];
    fmt_addr(ip, port, a);
    if (r) {
        dbg("connect %s (UDP): %s", a, errno_name(-r));
        return r;
    }
    st.pip = ip;
    st.pport = port;
    *out = st;
    dbg("connect %s (UDP): through the home router (virtual port %u)", a, st.lport);
    return 0;
}

void pol_udp_unregister(const vinfo *v)
{
    if (!v->registered || v->owner != getpid()) return;
    eng_forget(UVPN_T_UDPBIND, v->lip, v->lport);
    udpbind(v->lip, v->lport, 0, 0, UNREGISTER_MS);
}

ssize_t pol_udp_send(int fd, int has, vinfo *st, int *changed, const struct msghdr *msg, int flags)
{
    uint32_t ip;
    uint16_t port;
    *changed = 0;
    if (msg->msg_name) {
        if (!sa_get_v4(msg->msg_name, msg->msg_namelen, &ip, &port) || !cfg_is_virtual(ip))
            return POL_UDP_NATIVE;
    } else if (has && st->kind == VS_UDP && st->pport) {
        ip = st->pip;
        port = st->pport;
    } else {
        return POL_UDP_NATIVE;
    }
    if (!(has && st->kind == VS_UDP) && pol_sockopt_int(fd, SO_TYPE) != SOCK_DGRAM) return POL_UDP_NATIVE;
    size_t n = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) n += msg->msg_iov[i].iov_len;
    char a[24];
    if (n > UVPN_DGRAM_MAX_PAYLOAD) {
        dbg("send to %s: %zu bytes do not fit the tunnel (at most %d) (EMSGSIZE)", fmt_addr(ip, port, a), n,
            UVPN_DGRAM_MAX_PAYLOAD);
        return -EMSGSIZE;
    }
    int r = 0;
    if (!(has && st->kind == VS_UDP)) r = udp_fresh(fd, st), *changed = 1;
    else if (!st->registered) r = udp_register(st), *changed = 1;
    if (r) return r;
    uint8_t key[UVPN_KEY_LEN], head[UVPN_DGRAM_HEAD_LEN];
    char why[256];
    if (cfg_key(key, why, sizeof why)) {
        dbg("send to %s: %s", fmt_addr(ip, port, a), why);
        return -EACCES;
    }
    uvpn_dgram d = {st->lip, ip, st->lport, port};
    uvpn_dgram_seal(key, &d, msg->msg_iov, (int)msg->msg_iovlen, head);
    memset(key, 0, sizeof key);
    struct iovec stack[IOV_STACK], *v = stack;
    if (msg->msg_iovlen + 1 > IOV_STACK && !(v = malloc((msg->msg_iovlen + 1) * sizeof *v))) return -ENOMEM;
    v[0].iov_base = head;
    v[0].iov_len = sizeof head;
    if (msg->msg_iovlen) memcpy(v + 1, msg->msg_iov, msg->msg_iovlen * sizeof *v);
    struct sockaddr_storage ra;
    socklen_t rl;
    uint32_t dip;
    uint16_t dport;
    ssize_t s = 0;
    /* Straight to the endpoint when the router told where it is (asked the first time, so this
     * datagram and those until the answer go through the router). */
    if (!cfg()->direct_never && eng_udp_path(st->lip, st->lport, ip, port, &dip, &dport)) rl = sa_make_v4(st->family, dip, dport, &ra);
    else s = router_addr(st, &ra, &rl);
    if (s == 0) {
        struct msghdr m = {&ra, rl, v, msg->msg_iovlen + 1, msg->msg_control, msg->msg_controllen, 0};
        s = real.sendmsg(fd, &m, flags);
        s = s < 0 ? -errno : s - (ssize_t)sizeof head;
    }
    if (v != stack) free(v);
    return s;
}

/* Copies n bytes of src into the iovecs; returns the bytes copied. */
static size_t to_iov(const struct iovec *iov, size_t cnt, const uint8_t *src, size_t n)
{
    size_t done = 0;
    for (size_t i = 0; i < cnt && done < n; i++) {
        size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        memcpy(iov[i].iov_base, src + done, k);
        done += k;
    }
    return done;
}

/* Hands a received datagram (n bytes of src, from from/fl) to msg like recvmsg would. */
static ssize_t deliver(struct msghdr *msg, const struct msghdr *m, const uint8_t *src, size_t n,
                       const void *from, socklen_t fl, int flags)
{
    size_t got = to_iov(msg->msg_iov, msg->msg_iovlen, src, n);
    if (msg->msg_name) sa_copy_out(from, fl, msg->msg_name, &msg->msg_namelen);
    msg->msg_controllen = m->msg_controllen;
    msg->msg_flags = (m->msg_flags & ~MSG_TRUNC) | (got < n ? MSG_TRUNC : 0);
    return (flags & MSG_TRUNC) ? (ssize_t)n : (ssize_t)got;
}

ssize_t pol_udp_recv(int fd, const vinfo *st, struct msghdr *msg, int flags)
{
    if (st->kind != VS_UDP || !st->registered) return POL_UDP_NATIVE;
    uint8_t key[UVPN_KEY_LEN];
    char why[256], a[24], b[24];
    int have_key = cfg_key(key, why, sizeof why) == 0;
    uint8_t *buf = malloc(UVPN_DGRAM_MAX + 1);
    if (!buf) return -ENOMEM;
    ssize_t r;
    for (;;) {
        struct sockaddr_storage from;
        struct iovec one = {buf, UVPN_DGRAM_MAX + 1};
        struct msghdr m = {&from, sizeof from, &one, 1, msg->msg_control, msg->msg_controllen, 0};
        ssize_t n = real.recvmsg(fd, &m, flags & ~MSG_TRUNC);
        if (n < 0) {
            r = -errno;
            break;
        }
        uint32_t fip;
        uint16_t fport;
        int v4 = sa_get_v4((struct sockaddr *)&from, m.msg_namelen, &fip, &fport);
        int from_router = v4 && fport == cfg()->proxy_port && cfg_is_router_ip(fip);
        uvpn_dgram d;
        int e = have_key ? uvpn_dgram_open(key, buf, (size_t)n, &d) : UVPN_E_MAC;
        if (e == 0 && d.dst_ip != st->lip) e = UVPN_E_BODY;
        if (e == 0 && st->pport && (d.src_ip != st->pip || d.src_port != st->pport)) e = UVPN_E_BODY;
        /* From anyone else: a sender of the site that sent directly, when it verifies; any
         * other datagram is a real one, passed through as received. */
        if (!from_router && e != 0) {
            r = deliver(msg, &m, buf, (size_t)n, &from, m.msg_namelen, flags);
            break;
        }
        if (e == 0) {
            struct sockaddr_storage vs;
            socklen_t vl = sa_make_v4(st->family, d.src_ip, d.src_port, &vs);
            r = deliver(msg, &m, buf + UVPN_DGRAM_HEAD_LEN, (size_t)n - UVPN_DGRAM_HEAD_LEN, &vs, vl, flags);
            break;
        }
        dbg("recv on %s: dropped a datagram from the home router %s: %s", fmt_addr(st->lip, st->lport, a),
            fmt_addr(fip, fport, b), e == UVPN_E_BODY ? "not for this socket" : uvpn_strerror(e));
        if (flags & MSG_PEEK) real.recvmsg(fd, &(struct msghdr){0}, (flags & ~MSG_PEEK) | MSG_DONTWAIT);
    }
    memset(key, 0, sizeof key);
    free(buf);
    return r;
}
