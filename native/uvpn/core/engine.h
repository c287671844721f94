/* engine.h: the overlay client's engine, shared by libuvpn.so and the seccomp supervisor: one
 * thread per process (epoll) holding a persistent, authenticated link to the home router
 * (docs/PROTOCOL.md, "Links and the handshake"), over which every control request and every
 * CONNECT of the process travels, many at once. The program's own calls never wait for it
 * unless they are blocking calls by nature (a blocking connect, a listen's registration):
 *   - control requests (LISTEN, UDPBIND, NAME, ...): eng_request, answered on the link;
 *   - non-blocking connects: eng_connect_async takes a duplicate of the program's socket (put in
 *     parked by the caller with eng_park, so it shows no readiness), sends CONNECT, and when the
 *     answer comes moves that same socket to the router's data port and writes the DATA ticket,
 *     or, for a brokered connection, to the listener's real port with the DIRECT ticket (parked
 *     again and relayed when that fails or takes longer than ENG_DIRECT_MS), or, on failure,
 *     connects it to a refusing local port so it reports POLLERR; the program's calls ask
 *     eng_conn_state where it stands;
 *   - blocking connects: eng_connect_wait returns the answer; the caller connects and writes.
 * Listeners and UDP endpoints registered through it are registered again on every new link
 * (a router restart), and USE of UVPN_SRC_ADDR is declared on each. Errors are -errno with a
 * reason in why. */
#ifndef UVPN_ENGINE_H
#define UVPN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

/* A direct attempt (the router brokered the connection: its answer is of kind DIRECT, with the
 * listener's real address) gets this long to connect before the connect falls back to the relay
 * (CONNECT again with flag DIRECT_FAILED, so the router does not offer that path for a while). */
#define ENG_DIRECT_MS 250
/* A brokered direct path is remembered this long: connects to the same listener meanwhile mint
 * their own DIRECT tickets (no round trip to the router); a failed attempt forgets it. */
#define ENG_DIRECT_CACHE_MS 1000

/* A blocking connect's direct attempt failed with err: the CONNECT flags to ask the relay with
 * (DIRECT_FAILED, or 0 for ECONNREFUSED: the path works, the listener is gone); the brokered
 * path is forgotten. One failure right after the path carried a connection (within
 * ENG_DIRECT_CACHE_MS) is spared: relayed without DIRECT_FAILED, the path kept (a SYN dropped by
 * a full accept queue looks like a blackhole; a second failure in a row is one). */
uint8_t eng_direct_failed(const uvpn_connect *c, int err);
/* Connect c went direct: its path works (a later failure may be spared, eng_direct_failed). */
void eng_direct_ok(const uvpn_connect *c);

/* The ticket for connection c answered with a (DATA for the home router, DIRECT for the
 * listener), bound to the real source port bound_port, MACed with the network key. 0, or -1
 * when the key cannot be read (the reason in why). */
int eng_ticket(const uvpn_connect *c, const uvpn_answer *a, uint16_t bound_port, uint8_t out[UVPN_TICKET_LEN],
               char *why, size_t why_len);

/* One request on the link; waits for its answer (at most timeout_ms). Returns the answer's
 * status (>= 0) with its data copied into data (at most cap bytes, *data_len set), or -errno:
 * ENETUNREACH (no home router, or it cannot be reached), EACCES (key missing or refused),
 * ETIMEDOUT. */
int ov_control(int type, const uint8_t *body, size_t len, uint8_t *data, size_t cap,
               size_t *data_len, int timeout_ms, char *why, size_t why_len);

/* Starts the engine and its link now, without waiting (the supervisor, at start: the
 * router's address is resolved and INFO learned off the notification loop). */
void eng_start(void);

/* Registrations the engine repeats on every new link: a LISTEN body (16 bytes) or UDPBIND
 * body (8 bytes), keyed by their ip:vport; forget removes one. */
void eng_keep(int type, const uint8_t *body, size_t len);
void eng_forget(int type, uint32_t ip, uint16_t vport);

/* Starts a non-blocking overlay connect of the socket dup (a duplicate the engine now owns and
 * closes): the caller has it parked (eng_park), with saved_defer its TCP_DEFER_ACCEPT before, or
 * not (saved_defer -1: the supervisor, which parks it only if the answer is late,
 * eng_conn_wait_answer). Returns the connect's id (> 0), or 0 with errno set. */
uint32_t eng_connect_async(int dup, int family, const uvpn_connect *c, int saved_defer, int64_t deadline);
/* As eng_connect_async, only when the answer is at hand (a listener brokered lately: c gets a
 * ticket minted here, no round trip); else 0 with errno EWOULDBLOCK, dup untouched. */
uint32_t eng_connect_minted(int dup, int family, const uvpn_connect *c, int saved_defer, int64_t deadline);
/* 1 when connect c would be answered at once (as eng_connect_minted), at this moment. */
int eng_mintable(const uvpn_connect *c);
/* A blocking connect's answer when it is at hand (as eng_connect_wait would get it, without
 * asking the router): 1 with *a (c->src_port as assigned), else 0 (nothing sent). */
int eng_mint_answer(uvpn_connect *c, uvpn_answer *a);

/* Where a connect started with eng_connect_async stands. */
enum { ENG_PENDING = 0, ENG_DONE = 1, ENG_FAILED = 2, ENG_UNKNOWN = 3 };

/* Abandons fd's direct attempt: disconnected (AF_UNSPEC), and the error that leaves pending
 * (ECONNRESET from SYN_SENT) cleared, so the program never sees it. */
void eng_abandon(int fd);

/* Parks the non-blocking socket fd, where it shows no readiness while its connect is pending:
 * in SYN_SENT to the holding port (native/uvpn/core/park.c), or, where that cannot be (a
 * blocking socket, IPV6_V6ONLY), in the listening state with TCP_DEFER_ACCEPT (kernels before
 * 6.18.44 only: later ones refuse a connect() after listen). eng_abandon leaves either.
 * 0 or -errno. */
int eng_park(int fd);
/* Waits (at most until the monotonic deadline) for the router's answer to connect id: returns
 * ENG_PENDING when it has not come; then the socket is parked (eng_park) under the engine's
 * lock, so the answer cannot slip in between. Otherwise the engine has moved it on. */
int eng_conn_wait_answer(uint32_t id, int64_t until);
/* Settles it if it can (the ticket is written the moment its socket is connected) and returns
 * its state: DONE with *c (src_port as assigned; flags UVPN_CF_DIRECT when it went direct) filled; FAILED with *err (the overlay's errno;
 * with consume, reported only once: later calls say UNKNOWN); PENDING. */
int eng_conn_state(uint32_t id, int consume, uvpn_connect *c, int *err);
/* 1 when connect id is done (its ticket written), without waiting. */
int eng_conn_done(uint32_t id);
/* The program closed the socket: the engine drops the connect (and its duplicate). */
void eng_conn_release(uint32_t id);

/* A blocking overlay connect: sends CONNECT (c->flags as given) and waits until the answer or the
 * deadline. 0 with *a (of kind DATA or DIRECT; c->src_port as assigned), or -errno (the overlay's status as errno, ETIMEDOUT,
 * ENETUNREACH). */
int eng_connect_wait(uvpn_connect *c, int64_t deadline, uvpn_answer *a, char *why, size_t why_len);

/* A direct connection of this process ended with these bytes: counted, and reported to the home
 * router (PATHS) within ENG_PATHS_MS, or at exit. */
#define ENG_PATHS_MS 100
void eng_report_direct(uint64_t sent, uint64_t received);
/* Reports what is left now (at exit; also run as a destructor): written to the link before the
 * call returns, when the link is up. */
void eng_flush_paths(void);

/* UDP from lip:lport to the virtual dip:dport: 1 with the endpoint's real address when the home
 * router said it takes datagrams directly (an answer at most ENG_UDP_PATH_MS old), else 0 — then
 * the datagram goes through the router, and the router is asked (CONNECT of proto 17 with flag
 * DIRECT, not waited for). */
#define ENG_UDP_PATH_MS 3000
int eng_udp_path(uint32_t lip, uint16_t lport, uint32_t dip, uint16_t dport, uint32_t *real_ip, uint16_t *real_port);

/* Non-blocking connects in progress now (a cheap test: 0 means no socket can be pending). */
int eng_pending(void);

/* 1 if fd is one of the engine's own descriptors (the link, epoll, wake-up, refusers, the
 * inherited links): the program's close of it must not reach the kernel. */
int eng_owns_fd(int fd);

/* The links this process holds: its own (if any), then those of its ancestors it inherited
 * (fork, exec), which it keeps open for good so that the registrations it inherited live as
 * long as it does, even when it closes every descriptor (a daemon). Returns the count. */
int eng_links(int *fds, int max);
/* At load after exec: fd is an ancestor's link (checked by the caller): keep it. */
void eng_adopt_link(int fd);

#endif
