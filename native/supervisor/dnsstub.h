/* dnsstub.h: the seccomp supervisor's DNS stub, so that static programs that resolve names
 * themselves (Go, busybox: /etc/resolv.conf, then DNS over UDP) see overlay host names. The
 * supervisor connects a program's UDP socket that connects to port 53 of a real address to the
 * stub instead (127.0.0.1, a random port; dns_redirect); the stub answers A, AAAA and PTR
 * questions about overlay names from the home router (names.c) and relays every other query
 * unchanged to the nameserver the program addressed, and its reply back. Thread-safe. */
#ifndef MYRT_DNSSTUB_H
#define MYRT_DNSSTUB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_PORT 53

/* Connects fd (a duplicate of the program's UDP socket) to the stub, starting the stub on first
 * use, and remembers ns (len bytes: the nameserver the program asked for) for that socket.
 * 0 with *lport the socket's local port, or -errno (the caller lets the call go to the kernel). */
int dns_redirect(int fd, const struct sockaddr *ns, socklen_t len, uint16_t *lport);

/* 1 if fd is still connected to the stub from local port lport, with the nameserver the program
 * asked for in ss/sl; else 0. */
int dns_peer(int fd, uint16_t lport, struct sockaddr_storage *ss, socklen_t *sl);

/* Answers the query q (n bytes) when it is the overlay's business: writes the response into out
 * (cap >= 512) and returns its length; 0 when the query must go to the real nameserver; -1 when
 * it must be dropped (not a query). Malformed queries get FORMERR. */
long dns_answer(const uint8_t *q, size_t n, uint8_t *out, size_t cap);

#endif
