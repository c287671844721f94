/* config.h: libuvpn.so configuration: environment (read once), the network key, the home
 * router's address, the holder token, and which IPv4 addresses are virtual (subnets learned
 * with INFO by the engine, plus UVPN_NETWORKS, with a fallback set until then). */
#ifndef UVPN_CONFIG_H
#define UVPN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_NETS 256
#define CFG_MAX_ROUTER_IPS 8

typedef struct {
    uint32_t net, mask; /* host order */
} cidr;

struct cfg {
    int have_src;
    uint32_t src;            /* UVPN_SRC_ADDR, host order */
    int have_proxy;          /* UVPN_HOME_PROXY and a valid UVPN_HOME_PROXY_PORT */
    char proxy_host[256];
    uint16_t proxy_port;
    char key_path[4096];     /* UVPN_KEY_FILE or $HOME/.uvpn_key ("" if neither) */
    int timeout_ms;          /* UVPN_CONNECT_TIMEOUT, default 30 s */
    uint8_t holder[16];      /* UVPN_HOLDER (the holder token of a -- CMD lease), else zero */
    int n_extra;
    cidr extra[64];          /* UVPN_NETWORKS */
    int bind_any_virtual;    /* UVPN_BIND_ANY=virtual: a wildcard bind is virtual-only */
    int static_off;          /* UVPN_STATIC=off: libuvpn.so leaves static programs it execs alone */
    int direct_never;        /* UVPN_DIRECT=never: every connection through the router (else auto) */
};

/* The environment, parsed on first use. Never NULL. */
const struct cfg *cfg(void);

/* The network key (loaded on first success, then cached). 0, or -errno with *why set. */
int cfg_key(uint8_t key[32], char *why, size_t why_len);

/* The home router's IPv4 addresses (host order), resolving UVPN_HOME_PROXY on first use
 * (retried at most every 2 s after a failure). Returns the count, or -errno. */
int cfg_router_ips(uint32_t *ips, int max);
/* 1 if ip is one of the home router's resolved addresses (any 127/8 address when the router
 * is on loopback: a local router's connections may come from another loopback address). */
int cfg_is_router_ip(uint32_t ip);

/* 1 if ip (host order) is virtual. Never asks the router. */
int cfg_is_virtual(uint32_t ip);
/* The subnets the home router announced (INFO): from now on they are the virtual set. */
void cfg_learn(const cidr *nets, int n);

/* The virtual subnet that holds ip (host order), as the home router's INFO reported it (else
 * the fallback: ip's /16). 1 with *out filled, 0 when ip is not virtual. May fetch INFO. */
int cfg_subnet_of(uint32_t ip, cidr *out);

/* "a.b.c.d:port" into buf. */
const char *fmt_addr(uint32_t ip, uint16_t port, char buf[24]);

#endif
