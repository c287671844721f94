/* gcm_speed.c: the routers' AES-256-GCM (native/router/core/gcm.c) on session frames of 64 KiB,
 * for every implementation this CPU has: GMAC (authentication only, the default) and --encrypt's
 * seal and open, in GB/s, best of ROUNDS rounds (decrypt open includes a 64 KiB memcpy per
 * frame: the sealed frame put back). Built and run by scripts/bench/gcm_speed.sh.
 *   gcm_speed [FRAMES_PER_ROUND=5000] [ROUNDS=5] */
#include "router/core/gcm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEN 65535

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t frame[32 + LEN + 16], copy[32 + LEN + 16];

/* GB/s of op (0 GMAC seal, 1 GMAC open, 2 encrypt seal, 3 decrypt open) over n frames. */
static double rate(const uvpn_gcm *g, int op, int n)
{
    uint8_t *head = frame, *body = frame + 32, *tag = frame + 32 + LEN;
    double t = now_s();
    for (int i = 0; i < n; i++) {
        if (op == 0) uvpn_gcm_seal_frame(g, (uint64_t)i, head, body, NULL, LEN, 0, tag);
        else if (op == 2) uvpn_gcm_seal_frame(g, (uint64_t)i, head, body, body, LEN, 1, tag);
        else {
            if (op == 3) memcpy(frame, copy, sizeof frame); /* decrypted in place: sealed again */
            if (uvpn_gcm_open_frame(g, 0, head, body, LEN, op == 3, tag) != 0) {
                fprintf(stderr, "gcm_speed: a sealed frame failed to open\n");
                exit(1);
            }
        }
    }
    return (double)n * LEN / (now_s() - t) / 1e9;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000, rounds = argc > 2 ? atoi(argv[2]) : 5;
    uint8_t key[32];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof frame; i++) frame[i] = (uint8_t)(i * 7);
    printf("implementation\tGMAC seal\tGMAC open\tencrypt seal\tdecrypt open   (GB/s, 64 KiB frames)\n");
    for (int cap = UVPN_GCM_TOP; cap >= 0; cap--) {
        uvpn_gcm_cap(cap);
        static const char *shown; /* a cap above what the CPU has runs the same one again */
        if (shown && strcmp(shown, uvpn_gcm_impl()) == 0) continue;
        shown = uvpn_gcm_impl();
        uvpn_gcm g;
        uvpn_gcm_init(&g, key);
        int frames = cap == 0 ? n / 50 + 1 : n; /* the portable version is slow */
        double best[4] = {0, 0, 0, 0};
        for (int op = 0; op < 4; op++) {
            if (op == 1 || op == 3) { /* the frame to open: sealed under counter 0 */
                uvpn_gcm_seal_frame(&g, 0, frame, frame + 32, frame + 32, LEN, op == 3, frame + 32 + LEN);
                memcpy(copy, frame, sizeof frame);
            }
            for (int r = 0; r < rounds; r++) {
                double x = rate(&g, op, frames);
                if (x > best[op]) best[op] = x;
            }
        }
        printf("%s\t%.2f\t%.2f\t%.2f\t%.2f\n", uvpn_gcm_impl(), best[0], best[1], best[2], best[3]);
    }
    return 0;
}
