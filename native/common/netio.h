/* netio.h: small helpers shared by the overlay code: clocks, randomness, deadline-bounded
 * socket I/O that never touches O_NONBLOCK (MSG_DONTWAIT + poll), and IPv4 / v4-mapped IPv6
 * sockaddr conversion with the kernel's address-length truncation semantics. */
#ifndef UVPN_NETIO_H
#define UVPN_NETIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETIO_EOF 1   /* recv_exact: peer closed before n bytes */

uint64_t now_real_ms(void);  /* Unix time, ms */
int64_t mono_ms(void);       /* CLOCK_MONOTONIC, ms: for deadlines */
int random_bytes(void *buf, size_t n); /* getrandom(); 0 or -errno */

/* poll() one fd until the monotonic deadline. >0: revents; 0: timed out; <0: -errno. */
int wait_fd(int fd, short events, int64_t deadline);
/* All bytes, or -errno (-ETIMEDOUT at the deadline). Uses send(MSG_NOSIGNAL|MSG_DONTWAIT). */
int send_all(int fd, const void *buf, size_t n, int64_t deadline);
/* Exactly n bytes (never more): 0, NETIO_EOF, or -errno (-ETIMEDOUT at the deadline). */
int recv_exact(int fd, void *buf, size_t n, int64_t deadline);

/* IPv4 address (host order) and port of an AF_INET or v4-mapped AF_INET6 address.
 * Returns 1 if it is one of those, 0 otherwise (including short lengths). */
int sa_get_v4(const struct sockaddr *sa, socklen_t len, uint32_t *ip, uint16_t *port);
/* Port of any AF_INET or AF_INET6 address (len bytes), or -1. */
int sa_port(const struct sockaddr *sa, socklen_t len);
/* Writes ip:port as AF_INET, or as v4-mapped AF_INET6 when family is AF_INET6. Returns length. */
socklen_t sa_make_v4(int family, uint32_t ip, uint16_t port, struct sockaddr_storage *ss);
/* Copies src into the caller's (addr, *addrlen) like the kernel does: at most *addrlen bytes,
 * *addrlen set to the full length. addr or addrlen NULL: nothing. */
void sa_copy_out(const void *src, socklen_t len, struct sockaddr *addr, socklen_t *addrlen);
/* Dotted quad of a host-order IPv4 address. */
const char *ip_str(uint32_t ip, char buf[16]);

#endif
