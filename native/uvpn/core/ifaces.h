/* ifaces.h: the network interfaces an overlay program sees (docs/UVPN.md, "Interfaces"), shared
 * by libuvpn.so (uvpn/wrap/ifaddrs.c, netlink.c) and the seccomp supervisor (supervisor/ifreq.c,
 * netlink.c). A program with a virtual address (UVPN_SRC_ADDR) sees an overlay interface
 * "uvpn0" carrying that address with its subnet's mask (from the home router's INFO), listed
 * first, then loopback; the host's real interfaces are hidden unless UVPN_REAL_IFACES=1, which
 * lists them after uvpn0 (the kernel's own answers, loopback included). Without a virtual
 * address nothing is changed. The answers are built here: struct ifreq requests (SIOCGIF*),
 * SIOCGIFCONF entries, and rtnetlink dumps (RTM_GETLINK, RTM_GETADDR). */
#ifndef UVPN_IFACES_H
#define UVPN_IFACES_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#define IFV_NAME "uvpn0"
#define IFV_INDEX 30070 /* 0x7576, "uv": far above the indexes a host hands out */
#define IFV_MTU 1500
#define IFV_MAX 2
#define IFV_LOWER_UP 0x10000 /* IFF_LOWER_UP (linux/if.h): in netlink and getifaddrs flags only */

typedef struct {
    int index;
    char name[IFNAMSIZ];
    unsigned flags;     /* IFF_*, IFV_LOWER_UP */
    int mtu;
    uint16_t type;      /* ARPHRD_* */
    uint32_t addr, mask; /* IPv4, host order */
    int loopback;       /* also has ::1/128 */
} ifv_link;

typedef struct {
    int n;
    int real;           /* UVPN_REAL_IFACES=1: the kernel's interfaces follow these */
    ifv_link l[IFV_MAX];
} ifv_view;

/* 1 with *v filled when interface enumeration shows the overlay (UVPN_SRC_ADDR is set): uvpn0,
 * then loopback unless v->real. 0: leave every interface call to the kernel. May ask the home
 * router for INFO (the subnet's mask) on first use. */
int ifv_get(ifv_view *v);

/* The entry called name / with index i, or NULL. */
const ifv_link *ifv_by_name(const ifv_view *v, const char *name);
const ifv_link *ifv_by_index(const ifv_view *v, int i);

/* The interface ioctls the overlay answers (the SIOCGIF* reads, SIOCGIFCONF, SIOCETHTOOL, the
 * SIOCSIF* writes): the supervisor's filter stops exactly these. */
extern const unsigned ifv_ioctls[];
extern const int ifv_n_ioctls;
/* 1 if req (its low 32 bits, which is all the kernel reads) is one of them. */
int ifv_is_ioctl(unsigned long req);

/* Answers an interface ioctl about ifr->ifr_name (SIOCGIFNAME: about ifr->ifr_ifindex), ifr in
 * the caller's memory: 1 answered (ifr filled), -errno (ENODEV for a hidden interface, EPERM
 * for changing uvpn0, EOPNOTSUPP for SIOCETHTOOL on it), or 0: let the kernel answer (loopback
 * and real interfaces when they are shown, requests not about interfaces). */
int ifv_ifreq(const ifv_view *v, unsigned long req, struct ifreq *ifr);

/* The SIOCGIFCONF entries of the view's IPv4 interfaces, at most cap of them, into out.
 * Returns how many there are in all (may exceed cap). */
int ifv_ifconf(const ifv_view *v, struct ifreq *out, int cap);

/* ---- rtnetlink ----------------------------------------------------------------------------- */

/* Cheap test on a buffer of len bytes about to be sent: does it start like an rtnetlink request
 * the overlay answers (RTM_GETLINK, RTM_GETADDR) that fits in len? Reads only the 16-byte
 * header at buf. Callers then check that the socket is NETLINK_ROUTE. */
int ifv_nl_is_request(const void *buf, size_t len);

/* The answer to the rtnetlink request req (len bytes) for a socket whose port id is portid:
 * 1 with the reply datagram in out (*out_len bytes, at most cap) and *to_kernel set when the
 * request must also go to the kernel (real interfaces shown: the kernel's dump follows, and
 * ends with its NLMSG_DONE); 0: not ours, send it unchanged. */
int ifv_nl_answer(const ifv_view *v, const uint8_t *req, size_t len, uint32_t portid, uint8_t *out,
                  size_t cap, size_t *out_len, int *to_kernel);

/* Replies waiting on netlink sockets, by socket inode: the receive calls return them before
 * anything the kernel has. Thread-safe. */
/* Queues the datagram (copied) for socket ino. 0 or -ENOMEM / -ENOSPC. */
int ifv_nlq_put(uint64_t ino, const uint8_t *d, size_t len);
/* Number of sockets with a queued datagram (0: the receive wrappers have nothing to do). */
int ifv_nlq_pending(void);
/* Takes (peek: copies without taking) the queued datagram of ino into out (at most cap bytes;
 * *full = its whole length). Returns the bytes copied, or -1 when ino has none. */
long ifv_nlq_take(uint64_t ino, uint8_t *out, size_t cap, int peek, size_t *full);

#endif
