/* policy.h: the overlay's per-call decisions, shared by libuvpn.so (uvpn/wrap/socket.c, on the
 * program's own fds) and the seccomp supervisor (supervisor.c, on its pidfd_getfd duplicates of
 * the program's sockets): which bind/connect/accept/send is about a virtual address, and doing
 * the overlay work for it. Each takes the socket fd and the socket's overlay state (vinfo) and
 * returns the new state; where that state is kept is the caller's business (fd table or inode
 * table). All socket work goes through real.h. Callers in libuvpn.so must mark the thread as
 * "inside" around these calls (name resolution may re-enter the wrappers). */
#ifndef UVPN_POLICY_H
#define UVPN_POLICY_H

#include <stdint.h>
#include <sys/socket.h>

#include "common/wire.h"
#include "uvpn/wrap/fdtable.h"

/* bind(fd, addr, len) in the overlay. 0: not about the overlay (do the real bind unchanged);
 * 1: done, fd is really bound and *out is its new state; -errno: failed. */
int pol_bind(int fd, const struct sockaddr *addr, socklen_t len, vinfo *out);

/* After a successful real listen() on the bound overlay socket fd: registers the listener with
 * the home router under a fresh listener id (and gives a virtual-only listener TCP_DEFER_ACCEPT,
 * so strangers never reach its queue without sending). 1: *st updated (registered); 0: nothing
 * to do / native only; -errno: failed. */
int pol_listen(int fd, vinfo *st);

/* The backlog to give a listener with state st (or none, has 0) when the program asked for
 * backlog: at least POL_MIN_BACKLOG for a virtual-only listener, whose connections all come from
 * the router, in bursts. */
#define POL_MIN_BACKLOG 512
int pol_backlog(int has, const vinfo *st, int backlog);

/* Best-effort UNLISTEN for a listener whose last reference went away (only by the process
 * that registered it). */
void pol_unlisten(const vinfo *v);

/* connect(fd) to the virtual ip:port. has/prev: fd's current state. A blocking socket waits
 * (bounded by its SO_SNDTIMEO, else UVPN_CONNECT_TIMEOUT): 0 with *out the new state, or
 * -errno (ENETUNREACH, ECONNREFUSED, ETIMEDOUT, ...). A non-blocking one returns -EINPROGRESS
 * at once with *out a VS_CONNECTING state to keep (the engine finishes it); EALREADY while one
 * is in progress, EISCONN once connected (then *out is the connected state, to keep). */
int pol_connect(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev,
                vinfo *out);

/* pol_connect's answer when it was asked to wait for nothing and would have had to. */
#define POL_WOULD_WAIT 1
/* pol_connect_now's answer for a blocking connect it started and could not finish at once. */
#define POL_STARTED 2
/* A blocking connect pol_connect_now started: the minted answer, its handshake to the listener
 * under way; pol_connect_resume finishes it. */
typedef struct {
    uvpn_connect req;
    uvpn_answer ans;
    int64_t deadline;
} pol_pending;
/* As pol_connect, for a caller that must not wait (the supervisor's notification loop): only a
 * TCP connect whose answer is at hand (a listener brokered lately, eng_mintable) is done. A
 * non-blocking one as pol_connect; a blocking one is connected to the listener without waiting
 * (the socket non-blocking for the connect() call only: the caller's thread is stopped in its
 * own) and, when the handshake is already complete (loopback), given its ticket: 0 with *out;
 * else POL_STARTED with *pend, for pol_connect_resume where waiting is allowed. Anything else
 * returns POL_WOULD_WAIT with fd untouched. */
int pol_connect_now(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev,
                    vinfo *out, pol_pending *pend);
/* Finishes the blocking connect pol_connect_now started (waits for its handshake; falls back to
 * the relay when the direct attempt fails): as pol_connect. */
int pol_connect_resume(int fd, int family, pol_pending *pend, vinfo *out);
/* 1 when a TCP connect to ip:port may now be done by pol_connect_now (a cheap first look). */
int pol_connect_at_hand(uint32_t ip, uint16_t port);

/* Under the supervisor: how long (ms) a non-blocking connect waits, in the stopped call, for the
 * router's answer before it returns EINPROGRESS with the socket parked (eng_park; 0 in
 * libuvpn.so: it parks at once). While the program is stopped in connect() none of its pollers
 * watches the socket, so its move to the router's port is never seen half-done. */
extern int pol_park_ms;

/* Where the VS_CONNECTING state *st stands (settled if it can be): 1 connected (*st is now the
 * VS_CONNECTED state: keep it); 0 still in progress; -errno the connect failed (consume: the
 * error is reported once, the caller drops the state). */
int pol_settle(vinfo *st, int consume);

/* The last reference to state v went away (close): releases what it holds in the engine. */
void pol_release(const vinfo *v);

/* A connection nfd just accepted from peer on the overlay listener st. 0: an ordinary native
 * connection; 1: a relayed one whose ticket was verified, *out its state and *peer_out (length
 * *peer_len) the virtual peer address to report; -errno: not the router's (drop nfd). Never
 * waits, except at most 20 ms on a wildcard listener for the first bytes of a connection from
 * the router's address. */
int pol_accepted(const vinfo *st, int nfd, const struct sockaddr *peer, socklen_t pl, vinfo *out,
                 struct sockaddr_storage *peer_out, socklen_t *peer_len);

/* getsockname (peer 0) / getpeername (peer 1) answer for a socket with state st: 1 with the
 * virtual address in *ss (length *sl), or 0 when the real answer is right. */
int pol_name(const vinfo *st, int peer, struct sockaddr_storage *ss, socklen_t *sl);

/* 1 if sending on fd to addr (sendto/sendmsg/sendmmsg with flags) would put a packet toward a
 * virtual address: the caller fails the call with ENETUNREACH. op names the call for logs. */
int pol_send_blocked(int fd, const struct sockaddr *addr, socklen_t len, int flags,
                     const char *op);

/* The socket's real local port (0 when unbound or on failure). */
uint16_t pol_real_port(int fd);

/* SO_TYPE / SO_DOMAIN style integer socket option, or -1. */
int pol_sockopt_int(int fd, int opt);

#endif
