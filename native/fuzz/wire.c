/* fuzz/wire.c: the UVPN frame decoder (common/wire.c) on untrusted bytes. The first byte picks
 * the path: even, the bytes are decoded as they came (head checks, then the MAC, which random
 * input never passes); odd, the harness first writes a valid MAC over whatever head and body the
 * input has, so the decoder and the body parsers behind it (CONNECT, NAME answers, datagrams)
 * are reached as they are after a key holder's frame. Checks that a decoded frame's length
 * fields agree with the buffer, and that encoding the decoded frame gives the same bytes. */
#include "fuzz/fuzz.h"
#include "common/sha256.h"
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>

static void with_valid_mac(uint8_t *buf, size_t n)
{
    if (n < UVPN_HEAD_LEN + UVPN_MAC_LEN) return;
    size_t len = (size_t)buf[6] << 8 | buf[7];
    if (n != uvpn_frame_len(len)) return;
    hmac_sha256(FUZZ_KEY, sizeof FUZZ_KEY, buf, UVPN_HEAD_LEN + len, buf + UVPN_HEAD_LEN + len);
}

static void check_frame(const uint8_t *buf, size_t n)
{
    uvpn_head h;
    const uint8_t *body = NULL;
    if (uvpn_decode_frame(FUZZ_KEY, buf, n, &h, &body) != UVPN_OK) return;
    if (n != uvpn_frame_len(h.len) || body != buf + UVPN_HEAD_LEN) abort();
    uint8_t *again = malloc(n);
    if (!again) return;
    long m = uvpn_encode(again, n, FUZZ_KEY, h.type, h.nonce, h.time_ms, body, h.len);
    if (m != (long)n || memcmp(again, buf, n) != 0) abort(); /* decode then encode: same bytes */
    free(again);
    uvpn_connect c;
    uvpn_connect_unpack(body, h.len, &c);
    uint32_t ip;
    char name[UVPN_NAME_MAX + 1];
    if (h.len > 0 && uvpn_name_answer(body + 1, h.len - 1, &ip, name) == 0 &&
        strlen(name) > UVPN_NAME_MAX) abort();
    uvpn_status_to_errno(h.len ? body[0] : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1) with_valid_mac(buf, size - 1);
    check_frame(buf, size - 1);
    uvpn_head h;
    uvpn_decode_head(buf, size - 1, &h);
    uvpn_dgram d;
    if (data[0] & 1 && size - 1 >= UVPN_DGRAM_HEAD_LEN) {
        /* A datagram with a valid MAC over head bytes 0..17 and the payload. */
        uint8_t mac[32];
        hmac_sha256_ctx c;
        hmac_sha256_init(&c, FUZZ_KEY, sizeof FUZZ_KEY);
        hmac_sha256_update(&c, buf, 18);
        hmac_sha256_update(&c, buf + UVPN_DGRAM_HEAD_LEN, size - 1 - UVPN_DGRAM_HEAD_LEN);
        hmac_sha256_final(&c, mac);
        memcpy(buf + 18, mac, UVPN_DGRAM_MAC_LEN);
    }
    if (uvpn_dgram_open(FUZZ_KEY, buf, size - 1, &d) == UVPN_OK && size - 1 < UVPN_DGRAM_HEAD_LEN) abort();
    free(buf);
    return 0;
}
