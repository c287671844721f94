/* policy.c: the overlay's per-call decisions and overlay work (see policy.h). Moved out of
 * uvpn/wrap/socket.c so the seccomp supervisor makes exactly the same decisions as libuvpn.so. */
#include "uvpn/core/policy.h"
#include "common/bytes.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/overlay.h"
#include "common/real.h"
#include "uvpn/core/udp.h"
#include "common/wire.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_FRAME_MS 5000   /* time a relayed connection gets to deliver its CONNECT */
#define PEEK_MS 500            /* "bound any": wait for the magic from the router's address */
#define UNLISTEN_MS 1000

int pol_sockopt_int(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    return getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 ? v : -1;
}

void pol_unlisten(const vinfo *v)
{
    if (v->kind == VS_UDP) {
        pol_udp_unregister(v);
        return;
    }
    if (!v->registered || v->owner != getpid()) return; /* forked children never unregister */
    uint8_t body[6];
    put32(body, v->lip);
    put16(body + 4, v->lport);
    char why[256] = "", a[24];
    size_t n;
    int st = ov_control(UVPN_T_UNLISTEN, body, sizeof body, NULL, 0, &n, UNLISTEN_MS, why, sizeof why);
    if (st) dbg("unlisten %s: %s", fmt_addr(v->lip, v->lport, a), why);
    else dbg("unlisten %s: done", fmt_addr(v->lip, v->lport, a));
}

int pol_connect(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev,
                vinfo *out)
{
    char d[24], why[256] = "";
    fmt_addr(ip, port, d);
    int type = pol_sockopt_int(fd, SO_TYPE);
    int domain = pol_sockopt_int(fd, SO_DOMAIN);
    if (type < 0 || domain < 0) return -errno; /* EBADF / ENOTSOCK from getsockopt */
    if (domain != family) return -EAFNOSUPPORT;
    if (type == SOCK_DGRAM) return pol_udp_connect(fd, ip, port, has, prev, out);
    if (type != SOCK_STREAM) {
        dbg("connect %s: this socket type over the overlay is not supported (ENETUNREACH)", d);
        return -ENETUNREACH;
    }
    if (has && prev->kind == VS_CONNECTED) return -EISCONN;
    const struct cfg *c = cfg();
    if (!c->have_src || !c->have_proxy) {
        dbg("connect %s: %s not set (ENETUNREACH)", d,
            !c->have_src ? "UVPN_SRC_ADDR" : "UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT");
        return -ENETUNREACH;
    }
    uint16_t sport = 0;
    int r = ov_connect(fd, family, c->src, has ? prev->lport : 0, ip, port, &sport, why, sizeof why);
    if (r) {
        dbg("connect %s: %s (%s)", d, why, errno_name(-r));
        return r;
    }
    vinfo n = {.kind = VS_CONNECTED, .family = family, .lip = c->src, .lport = sport,
               .pip = ip, .pport = port};
    *out = n;
    dbg("connect %s: connected through the home router (local port %u)", d, sport);
    return 0;
}

uint16_t pol_real_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    uint32_t ip;
    uint16_t port = 0;
    if (real.getsockname(fd, (struct sockaddr *)&ss, &l) == 0) {
        if (ss.ss_family == AF_INET6 && l >= (socklen_t)sizeof(struct sockaddr_in6))
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        else if (sa_get_v4((struct sockaddr *)&ss, l, &ip, &port) == 0)
            port = 0;
    }
    return port;
}

int pol_bind(int fd, const struct sockaddr *addr, socklen_t len, vinfo *out)
{
    uint32_t ip = 0;
    uint16_t port = 0;
    int v4 = sa_get_v4(addr, len, &ip, &port);
    int any6 = !v4 && addr && len >= (socklen_t)sizeof(struct sockaddr_in6) &&
               addr->sa_family == AF_INET6 &&
               IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr);
    if (!v4 && !any6) return 0;
    int family = addr->sa_family;
    if (any6) port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    int any = any6 || (family == AF_INET && ip == 0);
    if (pol_sockopt_int(fd, SO_TYPE) == SOCK_DGRAM && pol_sockopt_int(fd, SO_DOMAIN) == family)
        return pol_udp_bind(fd, addr, len, ip, port, any, out);
    if (pol_sockopt_int(fd, SO_TYPE) != SOCK_STREAM || pol_sockopt_int(fd, SO_DOMAIN) != family ||
        (any && !cfg()->have_src) || (!any && !cfg_is_virtual(ip)))
        return 0;
    char a[24];
    const struct cfg *c = cfg();
    if (any) {
        if (real.bind(fd, addr, len)) return -errno;
        uint16_t rp = pol_real_port(fd);
        vinfo n = {.kind = VS_BOUND_ANY, .family = family, .lip = c->src, .lport = rp, .real_port = rp};
        *out = n;
        return 1;
    }
    fmt_addr(ip, port, a);
    if (!c->have_src || ip != c->src) {
        char s[16];
        dbg("bind %s: not this process's virtual address (%s) (EADDRNOTAVAIL)", a,
            c->have_src ? ip_str(c->src, s) : "UVPN_SRC_ADDR unset");
        return -EADDRNOTAVAIL;
    }
    /* Really bind to the wildcard address with an ephemeral port; the router relays to it. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    ss.ss_family = (sa_family_t)family; /* port 0, address INADDR_ANY / in6addr_any */
    if (real.bind(fd, (struct sockaddr *)&ss, sl)) {
        int e = errno;
        dbg("bind %s: real bind failed (%s)", a, errno_name(e));
        return -e;
    }
    uint16_t rp = pol_real_port(fd);
    vinfo n = {.kind = VS_BOUND_VIRTUAL, .family = family, .lip = ip, .lport = port ? port : rp,
               .real_port = rp};
    *out = n;
    dbg("bind %s: virtual, real port %u", fmt_addr(ip, n.lport, a), rp);
    return 1;
}

int pol_listen(vinfo *st)
{
    if ((st->kind != VS_BOUND_VIRTUAL && st->kind != VS_BOUND_ANY) || st->registered) return 0;
    uint8_t body[8];
    put32(body, st->lip);
    put16(body + 4, st->lport);
    put16(body + 6, st->real_port);
    char why[256] = "", a[24];
    size_t n;
    fmt_addr(st->lip, st->lport, a);
    int status = ov_control(UVPN_T_LISTEN, body, sizeof body, NULL, 0, &n, cfg()->timeout_ms, why,
                            sizeof why);
    if (status == 0) {
        st->registered = 1;
        st->owner = getpid();
        dbg("listen %s: registered with the home router (real port %u)", a, st->real_port);
        return 1;
    }
    int e = status < 0 ? -status : uvpn_status_to_errno(status);
    if (st->kind == VS_BOUND_ANY) {
        dbg("listen %s: %s (%s); listening natively only", a, why, errno_name(e));
        return 0;
    }
    dbg("listen %s: %s (%s)", a, why, errno_name(e));
    return -e;
}

int pol_accepted(const vinfo *st, int nfd, const struct sockaddr *peer, socklen_t pl, vinfo *out,
                 struct sockaddr_storage *peer_out, socklen_t *peer_len)
{
    uint32_t pip = 0;
    uint16_t pport = 0;
    int got = sa_get_v4(peer, pl, &pip, &pport);
    int relay = st->kind == VS_BOUND_VIRTUAL;
    if (!relay && st->registered && got)
        relay = cfg_is_router_ip(pip) && ov_peek_magic(nfd, mono_ms() + PEEK_MS);
    if (!relay) return 0;
    char la[24], pa[24], why[256] = "";
    fmt_addr(st->lip, st->lport, la);
    uvpn_connect c;
    int r = ov_read_connect(nfd, st->lip, st->lport, mono_ms() + ACCEPT_FRAME_MS, &c, why, sizeof why);
    if (r) {
        dbg("accept %s: dropped connection from %s: %s", la, got ? fmt_addr(pip, pport, pa) : "?", why);
        return r;
    }
    vinfo n = {.kind = VS_CONNECTED, .family = st->family, .lip = c.dst_ip, .lport = c.dst_port,
               .pip = c.src_ip, .pport = c.src_port};
    *out = n;
    *peer_len = sa_make_v4(st->family, c.src_ip, c.src_port, peer_out);
    dbg("accept %s: relayed connection from %s", la, fmt_addr(c.src_ip, c.src_port, pa));
    return 1;
}

int pol_name(const vinfo *st, int peer, struct sockaddr_storage *ss, socklen_t *sl)
{
    int peer_known = st->kind == VS_CONNECTED || (st->kind == VS_UDP && st->pport);
    if (peer ? !peer_known : st->kind == VS_BOUND_ANY) return 0;
    *sl = peer ? sa_make_v4(st->family, st->pip, st->pport, ss)
               : sa_make_v4(st->family, st->lip, st->lport, ss);
    return 1;
}

int pol_send_blocked(int fd, const struct sockaddr *addr, socklen_t len, int flags, const char *op)
{
    uint32_t ip;
    uint16_t port;
    if (!addr || !sa_get_v4(addr, len, &ip, &port)) return 0;
    int v = cfg_is_virtual(ip);
    /* TCP ignores the address unless MSG_FASTOPEN turns the send into a connect. */
    if (v && pol_sockopt_int(fd, SO_TYPE) == SOCK_STREAM && !(flags & MSG_FASTOPEN)) v = 0;
    if (!v) return 0;
    char a[24];
    dbg("%s %s: UDP over the overlay is not supported (ENETUNREACH)", op, fmt_addr(ip, port, a));
    return 1;
}
