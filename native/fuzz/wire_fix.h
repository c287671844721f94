/* wire_fix.h: the `wire` harness's MAC fix-ups, shared with the differential test's C half
 * (fuzz/wire.c, fuzz/wire_diff.c): each writes a valid MAC under FUZZ_KEY over whatever frame,
 * ticket or datagram the bytes hold, so that the parsers behind the MAC are reached. */
#ifndef MYRT_FUZZ_WIRE_FIX_H
#define MYRT_FUZZ_WIRE_FIX_H

#include "fuzz/fuzz.h"
#include "common/sha256.h"
#include "common/wire.h"

#include <string.h>

/* A frame whose length field matches its size gets the MAC over its head and body. */
static inline void fix_frame_mac(uint8_t *buf, size_t n)
{
    if (n < UVPN_HEAD_LEN + UVPN_MAC_LEN) return;
    size_t len = (size_t)buf[6] << 8 | buf[7];
    if (n != uvpn_frame_len(len)) return;
    hmac_sha256(FUZZ_KEY, sizeof FUZZ_KEY, buf, UVPN_HEAD_LEN + len, buf + UVPN_HEAD_LEN + len);
}

/* A ticket of at least UVPN_TICKET_LEN bytes gets the MAC over its first bytes. */
static inline void fix_ticket_mac(uint8_t *buf, size_t n)
{
    if (n < UVPN_TICKET_LEN) return;
    hmac_sha256(FUZZ_KEY, sizeof FUZZ_KEY, buf, UVPN_TICKET_LEN - UVPN_MAC_LEN, buf + UVPN_TICKET_LEN - UVPN_MAC_LEN);
}

/* A datagram with a whole head gets the MAC over its first 18 bytes and its payload. */
static inline void fix_dgram_mac(uint8_t *buf, size_t n)
{
    if (n < UVPN_DGRAM_HEAD_LEN) return;
    uint8_t mac[32];
    hmac_sha256_ctx c;
    hmac_sha256_init(&c, FUZZ_KEY, sizeof FUZZ_KEY);
    hmac_sha256_update(&c, buf, 18);
    hmac_sha256_update(&c, buf + UVPN_DGRAM_HEAD_LEN, n - UVPN_DGRAM_HEAD_LEN);
    hmac_sha256_final(&c, mac);
    memcpy(buf + 18, mac, UVPN_DGRAM_MAC_LEN);
}

#endif
