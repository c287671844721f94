/* resolve.c: overlay host names in libuvpn.so (docs/UVPN.md, "Overlay host names"): the wrappers of
 * getaddrinfo, gethostbyname, gethostbyname2, gethostbyname_r, gethostbyname2_r, gethostbyaddr,
 * gethostbyaddr_r and getnameinfo.
 *
 * Rules: NAME.uvpn is only ever asked of the home router (NAME frame), never of the real DNS; a
 * bare NAME (no dot, not numeric, not "localhost") is asked of the home router first and goes to
 * the real resolver only when the overlay does not know it; anything else passes straight
 * through. Reverse lookups of virtual addresses are answered by the overlay only: a virtual
 * address without a name is shown numerically, never sent to the real DNS. An overlay answer is
 * turned into the libc's own result by resolving the numeric address with the real function,
 * so freeaddrinfo, services, hints and v4-mapped IPv6 behave exactly as libc does. */
#include "uvpn/wrap/wrap.h"
#include "uvpn/core/config.h"
#include "uvpn/core/names.h"
#include "common/netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUFFIX NM_SUFFIX

/* ---- asking the overlay (names.c), marked "inside" so its sockets are left alone --------- */

static int lookup(const char *host, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    if (!host) return NM_NOT_OVERLAY;
    inside = 1;
    int r = nm_lookup(host, strlen(host), ip, canon);
    inside = 0;
    return r;
}

static int lookup_addr(uint32_t ip, char name[UVPN_NAME_MAX + 1])
{
    inside = 1;
    int r = nm_lookup_addr(ip, name);
    inside = 0;
    return r;
}

/* IPv4 address of an AF_INET address or a v4-mapped AF_INET6 one (len bytes at addr). */
static int addr_v4(const void *addr, socklen_t len, int type, uint32_t *ip)
{
    if (!addr) return 0;
    if (type == AF_INET && len >= 4) {
        uint32_t a;
        memcpy(&a, addr, 4);
        *ip = ntohl(a);
        return 1;
    }
    if (type == AF_INET6 && len >= 16 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
        uint32_t a;
        memcpy(&a, (const uint8_t *)addr + 12, 4);
        *ip = ntohl(a);
        return 1;
    }
    return 0;
}

/* ---- getaddrinfo / getnameinfo ----------------------------------------------------------- */

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    real_init();
    if (!real.getaddrinfo) return EAI_SYSTEM;
    if (inside || (hints && (hints->ai_flags & AI_NUMERICHOST)))
        return real.getaddrinfo(node, service, hints, res);
    int saved = errno;
    uint32_t ip = 0;
    char canon[UVPN_NAME_MAX + 1];
    int r = lookup(node, &ip, canon);
    errno = saved;
    if (r == NM_NOT_OVERLAY) return real.getaddrinfo(node, service, hints, res);
    if (r != NM_FOUND) return r == NM_DOWN ? EAI_AGAIN : EAI_NONAME;
    struct addrinfo h;
    memset(&h, 0, sizeof h);
    if (hints) h = *hints;
    else h.ai_flags = AI_V4MAPPED; /* glibc's default is AI_V4MAPPED | AI_ADDRCONFIG */
    h.ai_flags = (h.ai_flags & ~(AI_CANONNAME | AI_ADDRCONFIG)) | AI_NUMERICHOST;
    char num[16];
    int e = real.getaddrinfo(ip_str(ip, num), service, &h, res);
    if (e == 0 && hints && (hints->ai_flags & AI_CANONNAME)) {
        size_t cl = strlen(canon);
        char *c = malloc(cl + sizeof SUFFIX);
        if (c) {
            memcpy(c, canon, cl);
            memcpy(c + cl, SUFFIX, sizeof SUFFIX);
        }
        (*res)->ai_canonname = c; /* freeaddrinfo frees it */
    }
    return e;
}

EXPORT int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                       char *serv, socklen_t servlen, int flags)
{
    real_init();
    if (!real.getnameinfo) return EAI_SYSTEM;
    uint32_t ip;
    uint16_t port;
    if (inside || !host || !hostlen || (flags & NI_NUMERICHOST) || !sa_get_v4(sa, salen, &ip, &port))
        return real.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    int saved = errno;
    char name[UVPN_NAME_MAX + 1];
    int r = lookup_addr(ip, name);
    errno = saved;
    if (r == NM_NOT_OVERLAY) return real.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    if (r != NM_FOUND && (flags & NI_NAMEREQD)) return r == NM_DOWN ? EAI_AGAIN : EAI_NONAME;
    /* The service (and a numeric host, never a DNS query for a virtual address) from libc. */
    int e = real.getnameinfo(sa, salen, host, hostlen, serv, servlen,
                           (flags & ~NI_NAMEREQD) | NI_NUMERICHOST);
    if (e || r != NM_FOUND) return e;
    size_t nl = strlen(name), need = nl + ((flags & NI_NOFQDN) ? 0 : strlen(SUFFIX)) + 1;
    if (need > hostlen) return EAI_OVERFLOW;
    memcpy(host, name, nl);
    memcpy(host + nl, (flags & NI_NOFQDN) ? "" : SUFFIX, need - nl);
    return 0;
}

/* ---- the hostent family ------------------------------------------------------------------ */

/* Lays out a one-address hostent in buf: 0, or ERANGE when buf is too small. */
static int fill_hostent(struct hostent *h, char *buf, size_t len, const char *name, uint32_t ip,
                        int af)
{
    size_t alen = af == AF_INET6 ? 16 : 4, nlen = strlen(name) + 1;
    uintptr_t align = (sizeof(char *) - ((uintptr_t)buf % sizeof(char *))) % sizeof(char *);
    if (len < align + 3 * sizeof(char *) + alen + nlen) return ERANGE;
    char **ptrs = (char **)(void *)(buf + align); /* addr_list[2], aliases[1] */
    char *addr = (char *)(ptrs + 3), *nm = addr + alen;
    uint32_t a = htonl(ip);
    memset(addr, 0, alen);
    if (af == AF_INET6) {
        addr[10] = addr[11] = (char)0xff;
        memcpy(addr + 12, &a, 4);
    } else {
        memcpy(addr, &a, 4);
    }
    memcpy(nm, name, nlen);
    ptrs[0] = addr;
    ptrs[1] = NULL;
    ptrs[2] = NULL;
    h->h_name = nm;
    h->h_aliases = ptrs + 2;
    h->h_addrtype = af;
    h->h_length = (int)alen;
    h->h_addr_list = ptrs;
    return 0;
}

/* Result of an overlay lookup as the _r functions report it. */
static int hostent_result(int r, const char *name, uint32_t ip, int af, struct hostent *ret,
                          char *buf, size_t buflen, struct hostent **result, int *h_errnop)
{
    *result = NULL;
    if (r != NM_FOUND) {
        *h_errnop = r == NM_DOWN ? TRY_AGAIN : HOST_NOT_FOUND;
        return r == NM_DOWN ? EAGAIN : ENOENT;
    }
    int e = fill_hostent(ret, buf, buflen, name, ip, af);
    if (e) {
        *h_errnop = NETDB_INTERNAL;
        return e;
    }
    *h_errnop = 0;
    *result = ret;
    return 0;
}

EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                            struct hostent **result, int *h_errnop)
{
    real_init();
    if (!real.gethostbyname2_r) return ENOSYS;
    if (inside || (af != AF_INET && af != AF_INET6))
        return real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    int saved = errno;
    uint32_t ip = 0;
    char canon[UVPN_NAME_MAX + 1];
    int r = lookup(name, &ip, canon);
    errno = saved;
    if (r == NM_NOT_OVERLAY) return real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    if (r == NM_FOUND && af == AF_INET6) { /* overlay names have IPv4 addresses only */
        *result = NULL;
        *h_errnop = NO_DATA;
        return 0;
    }
    char full[UVPN_NAME_MAX + sizeof SUFFIX] = "";
    if (r == NM_FOUND) strcat(strcpy(full, canon), SUFFIX);
    return hostent_result(r, full, ip, af, ret, buf, buflen, result, h_errnop);
}

EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                           struct hostent **result, int *h_errnop)
{
    return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

EXPORT int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                           size_t buflen, struct hostent **result, int *h_errnop)
{
    real_init();
    if (!real.gethostbyaddr_r) return ENOSYS;
    uint32_t ip;
    if (inside || !addr_v4(addr, len, type, &ip))
        return real.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
    int saved = errno;
    char name[UVPN_NAME_MAX + sizeof SUFFIX];
    int r = lookup_addr(ip, name);
    errno = saved;
    if (r == NM_NOT_OVERLAY)
        return real.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
    if (r == NM_FOUND) strcat(name, SUFFIX);
    return hostent_result(r, name, ip, type, ret, buf, buflen, result, h_errnop);
}

/* The non-reentrant forms: one buffer per thread, h_errno set as libc does. */
static __thread struct {
    struct hostent h;
    char buf[8192];
} tls_host;

static struct hostent *static_result(int e, struct hostent *res, int herr)
{
    h_errno = herr;
    if (!res && e == ERANGE) h_errno = NETDB_INTERNAL;
    return res;
}

EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
    struct hostent *res = NULL;
    int herr = 0;
    int e = gethostbyname2_r(name, af, &tls_host.h, tls_host.buf, sizeof tls_host.buf, &res, &herr);
    return static_result(e, res, herr);
}

EXPORT struct hostent *gethostbyname(const char *name) { return gethostbyname2(name, AF_INET); }

EXPORT struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    struct hostent *res = NULL;
    int herr = 0;
    int e = gethostbyaddr_r(addr, len, type, &tls_host.h, tls_host.buf, sizeof tls_host.buf, &res,
                            &herr);
    return static_result(e, res, herr);
}
