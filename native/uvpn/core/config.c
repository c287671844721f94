/* config.c: environment, key, home router address and the virtual-address set (config.h).
 *
 * The virtual set: 100.64.0.0/10 and UVPN_NETWORKS always; the subnets the engine learned from
 * the home router (INFO, asked on every new link), or until then UVPN_SRC_ADDR's /16. Deciding
 * never waits for the router. The lock is never held across network I/O. */
#include "uvpn/core/config.h"
#include "common/bytes.h"
#include "common/real.h"
#include "common/env.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INFO_RETRY_MS 2000

static struct cfg C;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int key_ok;
static uint8_t key_bytes[UVPN_KEY_LEN];

static int n_router;
static uint32_t router[CFG_MAX_ROUTER_IPS];
static int64_t router_last_try = -1;

static int info_ok;
static int n_learned;
static cidr learned[CFG_MAX_NETS];

static void fork_prepare(void) { pthread_mutex_lock(&lock); }
static void fork_parent(void) { pthread_mutex_unlock(&lock); }

static int parse_cidr(const char *s, cidr *out)
{
    char buf[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n + 1);
    int prefix = 32;
    char *slash = strchr(buf, '/');
    if (slash) {
        char *end;
        *slash = 0;
        long p = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || p < 0 || p > 32) return -1;
        prefix = (int)p;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1) return -1;
    out->mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
    out->net = ntohl(a.s_addr) & out->mask;
    return 0;
}

static void read_env(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_parent);

    const char *v = uvpn_getenv("UVPN_SRC_ADDR");
    struct in_addr a;
    if (v && *v) {
        if (inet_pton(AF_INET, v, &a) == 1) {
            C.have_src = 1;
            C.src = ntohl(a.s_addr);
        } else {
            dbg("UVPN_SRC_ADDR=%s is not an IPv4 address: ignored", v);
        }
    }
    v = uvpn_getenv("UVPN_HOME_PROXY");
    const char *p = uvpn_getenv("UVPN_HOME_PROXY_PORT");
    if (v && *v && strlen(v) < sizeof C.proxy_host) {
        char *end;
        long port = p ? strtol(p, &end, 10) : 0;
        if (p && *p && !*end && port > 0 && port < 65536) {
            snprintf(C.proxy_host, sizeof C.proxy_host, "%s", v);
            C.proxy_port = (uint16_t)port;
            C.have_proxy = 1;
        } else {
            dbg("UVPN_HOME_PROXY_PORT=%s is not a port: no home router", p ? p : "(unset)");
        }
    }
    v = uvpn_getenv("UVPN_KEY_FILE");
    if (v && *v) {
        snprintf(C.key_path, sizeof C.key_path, "%s", v);
    } else {
        const char *home = uvpn_getenv("HOME");
        if (home && *home) snprintf(C.key_path, sizeof C.key_path, "%s/.uvpn_key", home);
    }
    C.timeout_ms = 30000;
    v = uvpn_getenv("UVPN_CONNECT_TIMEOUT");
    if (v && *v) {
        char *end;
        double t = strtod(v, &end);
        if (!*end && t > 0 && t <= 86400) C.timeout_ms = t * 1000 < 1 ? 1 : (int)(t * 1000);
        else dbg("UVPN_CONNECT_TIMEOUT=%s is not a positive number: using 30", v);
    }
    v = uvpn_getenv("UVPN_HOLDER");
    if (v && *v) {
        int ok = strlen(v) == 2 * sizeof C.holder;
        for (size_t i = 0; ok && i < sizeof C.holder; i++) {
            unsigned b;
            ok = sscanf(v + 2 * i, "%2x", &b) == 1;
            C.holder[i] = (uint8_t)b;
        }
        if (!ok) {
            memset(C.holder, 0, sizeof C.holder);
            dbg("UVPN_HOLDER=%s is not a holder token (32 hex digits): ignored", v);
        }
    }
    v = uvpn_getenv("UVPN_DIRECT");
    if (v && *v) {
        if (strcmp(v, "never") == 0) C.direct_never = 1;
        else if (strcmp(v, "auto") != 0) dbg("UVPN_DIRECT=%s is neither auto nor never: using auto", v);
    }
    v = uvpn_getenv("UVPN_BIND_ANY");
    if (v && *v) {
        if (strcmp(v, "virtual") == 0) C.bind_any_virtual = 1;
        else if (strcmp(v, "real") != 0) dbg("UVPN_BIND_ANY=%s is neither real nor virtual: using real", v);
    }
    v = uvpn_getenv("UVPN_STATIC");
    if (v && *v) {
        if (strcmp(v, "off") == 0) C.static_off = 1;
        else if (strcmp(v, "seccomp") != 0) dbg("UVPN_STATIC=%s is neither seccomp nor off: using seccomp", v);
    }
    v = uvpn_getenv("UVPN_NETWORKS");
    if (v && *v) {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", v);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ' || *tok == '\t') tok++;
            char *e = tok + strlen(tok);
            while (e > tok && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
            if (!*tok) continue;
            if (C.n_extra == (int)(sizeof C.extra / sizeof C.extra[0])) {
                dbg("UVPN_NETWORKS: too many networks, rest ignored");
                break;
            }
            if (parse_cidr(tok, &C.extra[C.n_extra]) == 0) C.n_extra++;
            else dbg("UVPN_NETWORKS: '%s' is not a CIDR: ignored", tok);
        }
    }
}

const struct cfg *cfg(void)
{
    pthread_once(&env_once, read_env);
    return &C;
}

int cfg_key(uint8_t key[32], char *why, size_t why_len)
{
    const struct cfg *c = cfg();
    pthread_mutex_lock(&lock);
    int ok = key_ok;
    if (ok) memcpy(key, key_bytes, UVPN_KEY_LEN);
    pthread_mutex_unlock(&lock);
    if (ok) return 0;
    if (!c->key_path[0]) {
        snprintf(why, why_len, "no key file (UVPN_KEY_FILE and HOME unset)");
        return -EACCES;
    }
    int r = uvpn_key_load(c->key_path, key, why, why_len);
    if (r) return r;
    pthread_mutex_lock(&lock);
    memcpy(key_bytes, key, UVPN_KEY_LEN);
    key_ok = 1;
    pthread_mutex_unlock(&lock);
    return 0;
}

int cfg_router_ips(uint32_t *ips, int max)
{
    const struct cfg *c = cfg();
    if (!c->have_proxy) return -ENETUNREACH;
    pthread_mutex_lock(&lock);
    int n = n_router;
    int64_t now = mono_ms();
    int try_now = n == 0 && (router_last_try < 0 || now - router_last_try >= INFO_RETRY_MS);
    if (try_now) router_last_try = now;
    for (int i = 0; i < n && i < max; i++) ips[i] = router[i];
    pthread_mutex_unlock(&lock);
    if (n) return n < max ? n : max;
    if (!try_now) return -ENETUNREACH;

    uint32_t found[CFG_MAX_ROUTER_IPS];
    int nf = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, c->proxy_host, &a) == 1) {
        found[nf++] = ntohl(a.s_addr);
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int e = real.getaddrinfo(c->proxy_host, NULL, &hints, &res);
        if (e) {
            dbg("cannot resolve home router %s: %s", c->proxy_host, gai_strerror(e));
            return -ENETUNREACH;
        }
        for (struct addrinfo *ai = res; ai && nf < CFG_MAX_ROUTER_IPS; ai = ai->ai_next) {
            uint32_t ip = ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr);
            int dup = 0;
            for (int i = 0; i < nf; i++) dup |= found[i] == ip;
            if (!dup) found[nf++] = ip;
        }
        freeaddrinfo(res);
        if (!nf) return -ENETUNREACH;
    }
    pthread_mutex_lock(&lock);
    if (!n_router) {
        memcpy(router, found, sizeof found[0] * (size_t)nf);
        n_router = nf;
    }
    n = n_router;
    for (int i = 0; i < n && i < max; i++) ips[i] = router[i];
    pthread_mutex_unlock(&lock);
    return n < max ? n : max;
}

int cfg_is_router_ip(uint32_t ip)
{
    uint32_t ips[CFG_MAX_ROUTER_IPS];
    int n = cfg_router_ips(ips, CFG_MAX_ROUTER_IPS);
    for (int i = 0; i < n; i++)
        if (ips[i] == ip || ((ips[i] >> 24) == 127 && (ip >> 24) == 127)) return 1;
    return 0;
}

static int in_set(uint32_t ip, const cidr *set, int n)
{
    for (int i = 0; i < n; i++)
        if ((ip & set[i].mask) == set[i].net) return 1;
    return 0;
}

void cfg_learn(const cidr *nets, int n)
{
    if (n > CFG_MAX_NETS) n = CFG_MAX_NETS;
    pthread_mutex_lock(&lock);
    memcpy(learned, nets, (size_t)n * sizeof nets[0]);
    n_learned = n;
    info_ok = 1;
    pthread_mutex_unlock(&lock);
    dbg("learned %d virtual network(s) from the home router", n);
}

int cfg_is_virtual(uint32_t ip)
{
    const struct cfg *c = cfg();
    /* Loopback, "this network" and multicast/reserved are never virtual. */
    if ((ip >> 24) == 127 || (ip >> 24) == 0 || ip >= 0xe0000000u) return 0;
    /* 100.64.0.0/10, the overlay's address space, always counts (fail closed: an overlay
     * address the router has no route for gets ENETUNREACH from the router, never a kernel
     * connect); so do UVPN_NETWORKS and what the engine learned from the home router (INFO).
     * Never asked of the router here: a connect to a real address does not wait for it. */
    int v = (ip & 0xffc00000u) == 0x64400000u || in_set(ip, c->extra, c->n_extra);
    pthread_mutex_lock(&lock);
    if (!v && info_ok) v = in_set(ip, learned, n_learned);
    else if (!v) v = c->have_src && (ip & 0xffff0000u) == (c->src & 0xffff0000u);
    pthread_mutex_unlock(&lock);
    return v;
}

int cfg_subnet_of(uint32_t ip, cidr *out)
{
    if (!cfg_is_virtual(ip)) return 0; /* also fetches INFO when it is due */
    pthread_mutex_lock(&lock);
    int found = 0;
    for (int i = 0; info_ok && i < n_learned && !found; i++)
        if ((ip & learned[i].mask) == learned[i].net) *out = learned[i], found = 1;
    pthread_mutex_unlock(&lock);
    if (!found) out->mask = 0xffff0000u, out->net = ip & out->mask;
    return 1;
}

const char *fmt_addr(uint32_t ip, uint16_t port, char buf[24])
{
    char s[16];
    snprintf(buf, 24, "%s:%u", ip_str(ip, s), port);
    return buf;
}
