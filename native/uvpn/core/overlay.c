/* overlay.c: tickets on accepted connections (see overlay.h), and the process's seen-set of
 * ticket ids. */
#include "uvpn/core/overlay.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/real.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static uvpn_seen seen = UVPN_SEEN_INIT;

int ov_accept_ticket(int nfd, uint32_t lip, uint16_t lport, const uint8_t lid[UVPN_LID_LEN],
                     uint16_t peer_port, int wait_ms, uvpn_ticket *t, char *why, size_t why_len)
{
    uint8_t b[UVPN_TICKET_LEN];
    int64_t deadline = mono_ms() + wait_ms;
    ssize_t n;
    for (;;) {
        n = real.recv(nfd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n == (ssize_t)sizeof b || n == 0) break;
        if (n > 0 && memcmp(b, UVPN_TICKET_MAGIC, (size_t)n < UVPN_MAGIC_LEN ? (size_t)n : UVPN_MAGIC_LEN)) return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        if (mono_ms() >= deadline) break;
        struct pollfd p = {nfd, POLLIN, 0};
        int64_t left = deadline - mono_ms();
        if (n > 0) left = left < 2 ? left : 2; /* part of it is here: poll would not wait */
        real.poll(&p, 1, (int)(left > 0 ? left : 0));
    }
    if (n < UVPN_MAGIC_LEN || memcmp(b, UVPN_TICKET_MAGIC, UVPN_MAGIC_LEN)) {
        if (n > 0 && n < UVPN_MAGIC_LEN) {
            snprintf(why, why_len, "only %zd byte(s) of a ticket arrived", n);
            return -EPROTO;
        }
        return 0;
    }
    if (n < (ssize_t)sizeof b) {
        snprintf(why, why_len, "truncated ticket (%zd bytes)", n);
        return -EPROTO;
    }
    uint8_t key[UVPN_KEY_LEN];
    if (cfg_key(key, why, why_len)) return -EACCES;
    int r = uvpn_ticket_unpack(key, b, sizeof b, t);
    memset(key, 0, sizeof key);
    char a[24];
    if (r) {
        snprintf(why, why_len, "bad ticket: %s", uvpn_strerror(r));
        return r == UVPN_E_MAC ? -EACCES : -EPROTO;
    }
    if (t->kind != UVPN_TK_RELAYED && t->kind != UVPN_TK_DIRECT) {
        snprintf(why, why_len, "ticket of kind %u on a listener", t->kind);
        return -EPROTO;
    }
    if (t->dst_ip != lip || t->dst_port != lport || memcmp(t->lid, lid, UVPN_LID_LEN)) {
        snprintf(why, why_len, "ticket for %s is not for this listener's registration",
                 fmt_addr(t->dst_ip, t->dst_port, a));
        return -EPROTO;
    }
    if (t->bound_port != peer_port) {
        snprintf(why, why_len, "ticket bound to port %u, not the connection's %u", t->bound_port, peer_port);
        return -EPROTO;
    }
    r = uvpn_seen_check(&seen, t->tid, t->issued, now_real_ms());
    if (r) {
        snprintf(why, why_len, "ticket refused: %s", r == -ENOMEM ? "out of memory" : uvpn_strerror(r));
        return -EPROTO;
    }
    /* Valid: consume it, so the program reads only the stream. */
    for (size_t got = 0; got < sizeof b;) {
        n = real.recv(nfd, b, sizeof b - got, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -EPROTO;
        got += (size_t)n;
    }
    return 1;
}
