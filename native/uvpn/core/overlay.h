/* overlay.h: libuvpn.so's client side of the UVPN protocol: control exchanges with the home
 * router, the CONNECT handshake on a program's own socket, and reading/verifying the CONNECT
 * frame that starts a relayed connection on an accepted socket. All socket work uses the real
 * libc functions. Errors are returned as -errno with a human-readable reason in why. */
#ifndef UVPN_OVERLAY_H
#define UVPN_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

/* New socket to the home router, one request frame, one REPLY (MAC and nonce verified), close.
 * Returns the reply status (>= 0) and copies the reply data after the status byte into data
 * (at most cap bytes; *data_len = bytes copied), or -errno: ENETUNREACH (router unreachable or
 * unset), EACCES (key problem, or router closed without reply), ETIMEDOUT, EPROTO (bad reply). */
int ov_control(int type, const uint8_t *body, size_t len, uint8_t *data, size_t cap,
               size_t *data_len, int timeout_ms, char *why, size_t why_len);

/* Connects the program's socket fd (family AF_INET or AF_INET6) to the home router without
 * touching its O_NONBLOCK flag, sends CONNECT {TCP, src_ip:src_port, dst_ip:dst_port} and reads
 * exactly the REPLY frame. src_port 0 means "use the socket's real local port". On success
 * returns 0 with *used_src_port set; else -errno (status mapped to errno, EACCES when the router
 * closes without a reply, ETIMEDOUT, ENETUNREACH when the router is unreachable, ...). */
int ov_connect(int fd, int family, uint32_t src_ip, uint16_t src_port, uint32_t dst_ip,
               uint16_t dst_port, uint16_t *used_src_port, char *why, size_t why_len);

/* Reads exactly one CONNECT frame from an accepted socket before the monotonic deadline and
 * verifies MAC, TCP, time window, replay cache and dst == want_ip:want_port. 0 or -errno. */
int ov_read_connect(int fd, uint32_t want_ip, uint16_t want_port, int64_t deadline,
                    uvpn_connect *out, char *why, size_t why_len);

/* Peeks (without consuming) whether the stream starts with the magic "UVPN", waiting for data
 * until the deadline. 1 yes, 0 no / no data in time / closed. */
int ov_peek_magic(int fd, int64_t deadline);

#endif
