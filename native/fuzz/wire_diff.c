/* fuzz/wire_diff.c: the C half of the differential test of the two UVPN codecs
 * (tests/router/wire_diff_test.ts holds the TypeScript half). For each input file named on the
 * command line — inputs of the `wire` fuzz harness: a mode byte, then bytes — it prints one line
 * of what the C decoders make of it, in a canonical form the TypeScript side prints too: the
 * frame (before or after authentication, with the harness's MAC fix-up when the mode asks for
 * it), and the bodies behind a good MAC (CONNECT, its answer, a NAME answer, PATHS, HELLO), the
 * ticket, and the datagram. `wire_diff -` reads the inputs from standard input instead, each as a
 * 4-byte big-endian length and the bytes, and names them by their index. Built with the system
 * cc as build/wire_diff; reads no network. */
#include "fuzz/wire_fix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

static void frame(uint8_t *buf, size_t n, int fix, int authed)
{
    if (fix) fix_frame_mac(buf, n);
    uvpn_head h;
    const uint8_t *body;
    if (uvpn_decode_frame(FUZZ_KEY, buf, n, authed, &h, &body) != UVPN_OK) {
        printf(" frame=ERR");
        return;
    }
    printf(" frame=%u/%u/%llu/%u/", h.type, h.len, (unsigned long long)h.seq, h.reqid);
    hex(body, h.len);
    uvpn_connect c;
    if (uvpn_connect_unpack(body, h.len, &c) == UVPN_OK)
        printf(" connect=%u/%u/%u/%u/%u/%u", c.proto, c.flags, c.src_ip, c.src_port, c.dst_ip, c.dst_port);
    else printf(" connect=ERR");
    uvpn_answer a;
    if (h.len > 0 && uvpn_answer_unpack(body + 1, h.len - 1u, &a) == UVPN_OK) {
        printf(" answer=%u/%u/%u/%u/", a.kind, a.real_ip, a.real_port, a.src_port);
        hex(a.lid, sizeof a.lid);
        printf("/%llu/", (unsigned long long)a.issued);
        hex(a.tid, sizeof a.tid);
    } else printf(" answer=ERR");
    uint32_t ip;
    char name[UVPN_NAME_MAX + 1];
    if (h.len > 0 && uvpn_name_answer(body + 1, h.len - 1u, &ip, name) == 0) printf(" name=%u/%s", ip, name);
    else printf(" name=ERR");
    uvpn_paths p;
    if (uvpn_paths_unpack(body, h.len, &p) == UVPN_OK)
        printf(" paths=%u/%llu/%llu", p.conns, (unsigned long long)p.sent, (unsigned long long)p.received);
    else printf(" paths=ERR");
}

static void ticket(uint8_t *buf, size_t n, int fix)
{
    if (fix) fix_ticket_mac(buf, n);
    uvpn_ticket t;
    if (uvpn_ticket_unpack(FUZZ_KEY, buf, n, &t) != UVPN_OK) {
        printf(" ticket=ERR");
        return;
    }
    printf(" ticket=%u/%u/%u/%u/%u/", t.kind, t.src_ip, t.src_port, t.dst_ip, t.dst_port);
    hex(t.lid, sizeof t.lid);
    printf("/%u/%llu/", t.bound_port, (unsigned long long)t.issued);
    hex(t.tid, sizeof t.tid);
}

static void dgram(uint8_t *buf, size_t n, int fix)
{
    if (fix) fix_dgram_mac(buf, n);
    uvpn_dgram d;
    if (uvpn_dgram_open(FUZZ_KEY, buf, n, &d) != UVPN_OK) printf(" dgram=ERR");
    else printf(" dgram=%u/%u/%u/%u", d.src_ip, d.src_port, d.dst_ip, d.dst_port);
}

static void judge(const char *name, const uint8_t *data, size_t size)
{
    static uint8_t buf[70000];
    printf("%s", name);
    if (size >= 1) {
        size_t n = size - 1;
        int fix = data[0] & 1, authed = (data[0] >> 1) & 1;
        memcpy(buf, data + 1, n);
        frame(buf, n, fix, authed);
        memcpy(buf, data + 1, n);
        ticket(buf, n, fix);
        memcpy(buf, data + 1, n);
        dgram(buf, n, fix);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    static uint8_t data[70000];
    if (argc == 2 && strcmp(argv[1], "-") == 0) {
        uint8_t len[4];
        char name[16];
        for (unsigned i = 0; fread(len, 1, 4, stdin) == 4; i++) {
            size_t n = (size_t)len[0] << 24 | (size_t)len[1] << 16 | (size_t)len[2] << 8 | len[3];
            if (n > sizeof data || fread(data, 1, n, stdin) != n) {
                fprintf(stderr, "wire_diff: bad record on standard input: %u\n", i);
                return 2;
            }
            snprintf(name, sizeof name, "%u", i);
            judge(name, data, n);
        }
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "wire_diff: cannot open: %s\n", argv[i]);
            return 2;
        }
        size_t size = fread(data, 1, sizeof data, f);
        fclose(f);
        judge(argv[i], data, size);
    }
    return 0;
}
