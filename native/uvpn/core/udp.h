/* udp.h: UDP over the overlay, shared by libuvpn.so (uvpn/wrap/socket.c, on the program's own fds)
 * and the seccomp supervisor (supervisor.c, on pidfd_getfd duplicates): a UDP socket that binds
 * a virtual address (or 0.0.0.0 with UVPN_SRC_ADDR set), connects to one, or first sends to one
 * registers its real port with the home router (UDPBIND) and from then on exchanges
 * encapsulated datagrams (docs/PROTOCOL.md, "Datagrams") with the router's UDP port. State kind
 * VS_UDP: lip:lport its virtual address, pip:pport the virtual peer of a connected socket (pport
 * 0: not connected), registered once UDPBIND succeeded. Return conventions as in policy.h. */
#ifndef UVPN_UDP_H
#define UVPN_UDP_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "uvpn/wrap/fdtable.h"

/* Returned by pol_udp_send / pol_udp_recv when the call is not about the overlay: the caller
 * makes the real call unchanged. */
#define POL_UDP_NATIVE (-1000000)

/* bind of a SOCK_DGRAM socket to ip:port (any: the wildcard). 0: not about the overlay;
 * 1: done (really bound), *out its state; -errno. */
int pol_udp_bind(int fd, const struct sockaddr *addr, socklen_t len, uint32_t ip, uint16_t port,
                 int any, vinfo *out);

/* connect of a SOCK_DGRAM socket to the virtual ip:port: registers it if needed and really
 * connects it to the home router's UDP port, so the kernel accepts datagrams only from there.
 * 0 with *out, or -errno (ENETUNREACH when the router cannot be reached: fail closed). */
int pol_udp_connect(int fd, uint32_t ip, uint16_t port, int has, const vinfo *prev, vinfo *out);

/* Removes the registration of a UDP state (best effort, only by the process that made it). */
void pol_udp_unregister(const vinfo *v);

/* sendmsg(fd, msg, flags) when msg_name is a virtual address of a UDP socket, or msg_name is
 * NULL on a connected overlay UDP socket: registers the socket at its first such send (*st
 * updated, *changed set: the caller stores it), encapsulates and sends to the home router.
 * Returns the payload bytes sent, -errno (EMSGSIZE over UVPN_DGRAM_MAX_PAYLOAD, ENETUNREACH
 * when the router cannot be reached), or POL_UDP_NATIVE. has: whether *st holds fd's state. */
ssize_t pol_udp_send(int fd, int has, vinfo *st, int *changed, const struct msghdr *msg, int flags);

/* recvmsg(fd, msg, flags) on a registered overlay UDP socket: datagrams from the home router's
 * UDP port are verified (a bad MAC or a foreign destination is dropped and logged, and the next
 * one is awaited as recvmsg would) and reported with their virtual source in msg_name; others
 * are passed through as received. MSG_TRUNC semantics as the kernel's. Bytes, -errno, or
 * POL_UDP_NATIVE (st not a registered UDP state). */
ssize_t pol_udp_recv(int fd, const vinfo *st, struct msghdr *msg, int flags);

#endif
