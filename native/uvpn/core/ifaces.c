/* ifaces.c: the overlay's view of the network interfaces and the ioctl answers built from it
 * (ifaces.h; the rtnetlink answers are in nlroute.c). */
#include "uvpn/core/ifaces.h"
#include "uvpn/core/config.h"
#include "common/env.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

static int keep_real(void)
{
    const char *v = uvpn_getenv("UVPN_REAL_IFACES");
    return v && strcmp(v, "1") == 0;
}

int ifv_get(ifv_view *v)
{
    const struct cfg *c = cfg();
    if (!c->have_src) return 0;
    memset(v, 0, sizeof *v);
    cidr net;
    if (!cfg_subnet_of(c->src, &net)) net.mask = 0xffff0000u; /* UVPN_SRC_ADDR outside the overlay */
    ifv_link *o = &v->l[v->n++];
    o->index = IFV_INDEX;
    strcpy(o->name, IFV_NAME);
    o->flags = IFF_UP | IFF_RUNNING | IFF_NOARP | IFV_LOWER_UP;
    o->mtu = IFV_MTU;
    o->type = ARPHRD_NONE;
    o->addr = c->src;
    o->mask = net.mask;
    v->real = keep_real();
    if (!v->real) {
        ifv_link *lo = &v->l[v->n++];
        lo->index = 1;
        strcpy(lo->name, "lo");
        lo->flags = IFF_UP | IFF_RUNNING | IFF_LOOPBACK | IFV_LOWER_UP;
        lo->mtu = 65536;
        lo->type = ARPHRD_LOOPBACK;
        lo->addr = 0x7f000001u;
        lo->mask = 0xff000000u;
        lo->loopback = 1;
    }
    return 1;
}

const ifv_link *ifv_by_name(const ifv_view *v, const char *name)
{
    for (int i = 0; i < v->n; i++)
        if (strncmp(v->l[i].name, name, IFNAMSIZ) == 0) return &v->l[i];
    return NULL;
}

const ifv_link *ifv_by_index(const ifv_view *v, int index)
{
    for (int i = 0; i < v->n; i++)
        if (v->l[i].index == index) return &v->l[i];
    return NULL;
}

const unsigned ifv_ioctls[] = {
    SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR,
    SIOCGIFNETMASK, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFTXQLEN,
    SIOCGIFMAP, SIOCETHTOOL, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFDSTADDR, SIOCSIFBRDADDR,
    SIOCSIFNETMASK, SIOCSIFMTU, SIOCSIFNAME, SIOCSIFHWADDR, SIOCSIFTXQLEN, SIOCDIFADDR,
};
const int ifv_n_ioctls = sizeof ifv_ioctls / sizeof ifv_ioctls[0];

int ifv_is_ioctl(unsigned long req)
{
    for (int i = 0; i < ifv_n_ioctls; i++)
        if ((req & 0xffffffffu) == ifv_ioctls[i]) return 1;
    return 0;
}

static void put_in(struct sockaddr *sa, uint32_t ip)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(ip);
    memcpy(sa, &sin, sizeof sin);
}

int ifv_ifreq(const ifv_view *v, unsigned long req, struct ifreq *ifr)
{
    req &= 0xffffffffu;
    if (req == SIOCGIFNAME) {
        const ifv_link *l = ifv_by_index(v, ifr->ifr_ifindex);
        if (!l) return v->real ? 0 : -ENODEV;
        memset(ifr->ifr_name, 0, sizeof ifr->ifr_name);
        memcpy(ifr->ifr_name, l->name, strlen(l->name));
        return 1;
    }
    char name[IFNAMSIZ + 1];
    memcpy(name, ifr->ifr_name, IFNAMSIZ);
    name[IFNAMSIZ] = 0;
    const ifv_link *l = ifv_by_name(v, name);
    if (!l) return v->real ? 0 : -ENODEV; /* hidden: as if it did not exist */
    if (l->index != IFV_INDEX) return 0;  /* loopback: the kernel's answer is the truth */
    switch (req) {
    case SIOCGIFFLAGS: ifr->ifr_flags = (short)(l->flags & 0xffff); return 1;
    case SIOCGIFADDR: put_in(&ifr->ifr_addr, l->addr); return 1;
    case SIOCGIFNETMASK: put_in(&ifr->ifr_netmask, l->mask); return 1;
    case SIOCGIFDSTADDR: put_in(&ifr->ifr_dstaddr, l->addr); return 1;
    case SIOCGIFBRDADDR: put_in(&ifr->ifr_broadaddr, (l->addr & l->mask) | ~l->mask); return 1;
    case SIOCGIFMETRIC: ifr->ifr_metric = 0; return 1;
    case SIOCGIFMTU: ifr->ifr_mtu = l->mtu; return 1;
    case SIOCGIFINDEX: ifr->ifr_ifindex = l->index; return 1;
    case SIOCGIFTXQLEN: ifr->ifr_qlen = 500; return 1;
    case SIOCGIFMAP: memset(&ifr->ifr_map, 0, sizeof ifr->ifr_map); return 1;
    case SIOCGIFHWADDR:
        memset(&ifr->ifr_hwaddr, 0, sizeof ifr->ifr_hwaddr);
        ifr->ifr_hwaddr.sa_family = l->type;
        return 1;
    case SIOCETHTOOL: return -EOPNOTSUPP;
    default: return -EPERM; /* the SIOCSIF* writes: uvpn0 is the overlay's, not the program's */
    }
}

int ifv_ifconf(const ifv_view *v, struct ifreq *out, int cap)
{
    int k = 0;
    for (int i = 0; i < v->n; i++, k++) {
        if (k >= cap) continue;
        memset(&out[k], 0, sizeof out[k]);
        memcpy(out[k].ifr_name, v->l[i].name, strlen(v->l[i].name));
        put_in(&out[k].ifr_addr, v->l[i].addr);
    }
    return k;
}
