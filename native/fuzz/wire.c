/* fuzz/wire.c: the UVPN wire decoders (common/wire.c) on untrusted bytes: frames (version 2:
 * head checks before and after authentication, MAC), tickets, the bodies behind a MAC (CONNECT,
 * its answer, NAME answers, PATHS), the ticket seen-set, and encapsulated datagrams. The first byte of
 * the input picks the path: bit 0, the harness first writes a valid MAC over whatever head and
 * body (or ticket, or datagram) the input has, so the parsers behind the MAC are reached as they
 * are after a key holder's bytes; bit 1, the frame is judged as on an authenticated link. Checks
 * that a decoded frame re-encodes to the same bytes, that a decoded ticket packs back to the same
 * 88 bytes, and that the seen-set accepts a ticket id once. */
#include "fuzz/wire_fix.h"

#include <stdlib.h>
#include <string.h>

static void check_frame(const uint8_t *buf, size_t n, int authed)
{
    uvpn_head h;
    const uint8_t *body = NULL;
    uvpn_decode_head(buf, n, authed, &h);
    if (uvpn_decode_frame(FUZZ_KEY, buf, n, authed, &h, &body) != UVPN_OK) return;
    if (n != uvpn_frame_len(h.len) || body != buf + UVPN_HEAD_LEN) abort();
    uint8_t *again = malloc(n);
    if (!again) return;
    long m = uvpn_encode(again, n, FUZZ_KEY, h.type, h.seq, h.reqid, body, h.len);
    if (m != (long)n || memcmp(again, buf, n) != 0) abort(); /* decode then encode: same bytes */
    free(again);
    uvpn_connect c;
    uvpn_connect_unpack(body, h.len, &c);
    uvpn_paths p;
    if (uvpn_paths_unpack(body, h.len, &p) == 0) {
        uint8_t again_p[UVPN_PATHS_LEN];
        uvpn_paths_pack(&p, again_p);
        if (memcmp(again_p, body, UVPN_PATHS_LEN) != 0) abort(); /* unpack then pack: same bytes */
    }
    if (h.len > 0) {
        uvpn_answer a;
        uvpn_answer_unpack(body + 1, h.len - 1, &a);
        uint32_t ip;
        char name[UVPN_NAME_MAX + 1];
        if (uvpn_name_answer(body + 1, h.len - 1, &ip, name) == 0 && strlen(name) > UVPN_NAME_MAX) abort();
        uvpn_status_to_errno(body[0]);
    }
}

static void check_ticket(uint8_t *buf, size_t n, int fix_mac)
{
    if (n < UVPN_TICKET_LEN) return;
    if (fix_mac) fix_ticket_mac(buf, n);
    uvpn_ticket t;
    if (uvpn_ticket_unpack(FUZZ_KEY, buf, n, &t) != UVPN_OK) return;
    uint8_t again[UVPN_TICKET_LEN];
    uvpn_ticket_pack(FUZZ_KEY, &t, again);
    if (memcmp(again, buf, UVPN_TICKET_LEN) != 0) abort(); /* unpack then pack: same bytes */
    static uvpn_seen seen = UVPN_SEEN_INIT;
    int first = uvpn_seen_check(&seen, t.tid, t.issued, t.issued);
    if (first == 0 && uvpn_seen_check(&seen, t.tid, t.issued, t.issued) == 0) abort(); /* twice */
}

static void check_dgram(uint8_t *buf, size_t n, int fix_mac)
{
    if (n < UVPN_DGRAM_HEAD_LEN) return;
    if (fix_mac) fix_dgram_mac(buf, n);
    uvpn_dgram d;
    uvpn_dgram_open(FUZZ_KEY, buf, n, &d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, n);
    int fix = data[0] & 1, authed = (data[0] >> 1) & 1;
    if (fix) fix_frame_mac(buf, n);
    check_frame(buf, n, authed);
    memcpy(buf, data + 1, n);
    check_ticket(buf, n, fix);
    memcpy(buf, data + 1, n);
    check_dgram(buf, n, fix);
    free(buf);
    return 0;
}
