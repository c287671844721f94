/* overlay.h: the accept side of the UVPN protocol, shared by libuvpn.so and the supervisor:
 * reading and verifying the ticket that starts a relayed connection on an accepted socket
 * (docs/PROTOCOL.md, "Tickets"), without ever waiting for strangers. The connect side and every
 * exchange with the home router are in engine.h. */
#ifndef UVPN_OVERLAY_H
#define UVPN_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

/* The ticket at the start of the accepted connection nfd, for the listener lip:lport registered
 * with listener id lid; peer_port is the connection's real peer port. Looks at what has
 * arrived (MSG_PEEK|MSG_DONTWAIT), waiting at most wait_ms for first bytes. Returns 1 when a
 * valid ticket was there (MAC, kind RELAYED or DIRECT, listener id, bound port, issue time,
 * never seen before: the 88 bytes are consumed and *t filled); 0 when the connection does not
 * start with a ticket's magic (or nothing arrived in time): not an overlay connection; -errno
 * (EACCES, EPROTO) for a bad ticket, the reason in why. */
int ov_accept_ticket(int nfd, uint32_t lip, uint16_t lport, const uint8_t lid[UVPN_LID_LEN],
                     uint16_t peer_port, int wait_ms, uvpn_ticket *t, char *why, size_t why_len);

#endif
