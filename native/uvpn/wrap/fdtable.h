/* fdtable.h: per-fd overlay state of libuvpn.so. One vstate per socket (open file description),
 * shared by dup'ed fds through a reference count. The table is indexed by fd and grows in
 * fixed-size chunks that are never freed, so "does fd have state?" can be answered without the
 * lock (fast path for ordinary fds); every change happens under one mutex. Each state remembers
 * the socket's inode, so an fd closed behind our back (fclose, close_range, raw syscall) and
 * reused is detected and its stale state dropped. */
#ifndef UVPN_FDTABLE_H
#define UVPN_FDTABLE_H

#include <stdint.h>
#include <sys/types.h>

enum vkind {
    VS_BOUND_VIRTUAL = 1, /* bound to V:vport (really to any:real_port) */
    VS_BOUND_ANY,         /* bound to INADDR_ANY with UVPN_SRC_ADDR set: vport == real port */
    VS_CONNECTED,         /* overlay connection (connect or accept): local/peer are virtual */
    VS_UDP,               /* overlay UDP socket (udp.h): lip:lport virtual, pip:pport if connected */
    VS_DNS,               /* supervisor only: UDP socket connected to its DNS stub from real port
                             lport instead of a nameserver (dnsstub.h) */
    VS_CONNECTING,        /* non-blocking overlay connect in progress: the engine's connect
                             `conn` (engine.h); pip:pport the virtual peer asked for */
};

typedef struct {
    int kind;
    int family;           /* AF_INET / AF_INET6: form of the addresses we report */
    uint32_t lip, pip;    /* virtual local / peer IPv4, host order */
    uint16_t lport, pport;
    uint16_t real_port;   /* real local port (listeners) */
    int registered;       /* LISTEN accepted by the router: UNLISTEN when the last fd goes */
    pid_t owner;          /* process that registered (forked children never unregister) */
    uint32_t conn;        /* VS_CONNECTING: the engine's id of the connect */
    uint8_t lid[8];       /* listeners: the listener id of the registration */
    uint8_t wild;         /* VS_BOUND_VIRTUAL from a wildcard bind under UVPN_BIND_ANY=virtual:
                             WILD_V4 (registered; getsockname shows the wildcard), WILD_V6ONLY
                             (an IPV6_V6ONLY socket no IPv4 overlay connection can reach: not
                             registered) */
    uint8_t direct;       /* VS_CONNECTED: the connection went straight to the listener (the
                             connecting side; its bytes are reported to the router at close) */
} vinfo;

enum { WILD_NONE, WILD_V4, WILD_V6ONLY };

/* Lock-free hint: 0 means fd certainly has no state. */
int fdt_maybe(int fd);
/* Lock-free hint: 1 when fd's state is an overlay TCP connection that is established
 * (VS_CONNECTED), whose stream I/O needs nothing of the overlay: read/write/send/recv go
 * straight to the kernel (the direct path's data path costs no extra system call). */
int fdt_connected(int fd);
/* Copies fd's state into *out; 1 if present, 0 if not. */
int fdt_get(int fd, vinfo *out);
/* Sets fd's state: updates the shared object in place when fd has one (dups see it too),
 * otherwise creates it. Returns 0, or -1 (ENOMEM / EMFILE for fds beyond the table). */
int fdt_set(int fd, const vinfo *in);
/* Gives fd a fresh, unshared state (for a new fd from accept: any previous object is stale).
 * Returns 0, or -1 as fdt_set. */
int fdt_set_new(int fd, const vinfo *in);
/* newfd shares oldfd's state (after a successful dup). newfd's previous state is released;
 * returns 1 and fills *released if that was its last reference. */
int fdt_share(int oldfd, int newfd, vinfo *released);
/* Drops fd's state. Returns 1 and fills *released if that was the last reference. */
int fdt_clear(int fd, vinfo *released);

/* Calls fn for every fd with state (the socket's identity in dev/ino) until fn returns non-zero
 * (then returns 1). Lock-free snapshot reads: for an exec about to happen. */
int fdt_each(int (*fn)(int fd, const vinfo *v, dev_t dev, ino_t ino, void *ctx), void *ctx);

#endif
