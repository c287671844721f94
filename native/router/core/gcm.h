/* gcm.h: AES-256-GCM (NIST SP 800-38D) for the routers' session frames (docs/PROTOCOL.md,
 * "Sessions between routers"): authentication only (GMAC: the whole frame is additional data) or
 * authenticated encryption (--encrypt). One key schedule per session direction; 96-bit IVs.
 * x86-64 with AES-NI and PCLMULQDQ runs 8 blocks at a time (and 16 with VAES/VPCLMULQDQ, on
 * 256-bit registers with AVX2 or 512-bit ones with AVX-512), chosen at run time; any other CPU runs a portable version (correct, slow,
 * not hardened against cache-timing observers on the router's host). Pure computation: no
 * allocation, no I/O; a context is read-only after init, so one context may be used by one
 * thread while another reads it. */
#ifndef UVPN_GCM_H
#define UVPN_GCM_H

#include <stddef.h>
#include <stdint.h>

#define UVPN_GCM_KEY_LEN 32
#define UVPN_GCM_IV_LEN 12
#define UVPN_GCM_TAG_LEN 16
#define UVPN_GCM_POWERS 16
/* Implementation levels: 0 portable, 1 aesni-pclmul, 2 vaes-avx2, 3 vaes-avx512 (the highest). */
#define UVPN_GCM_TOP 3

typedef struct {
    /* AES-256 round keys (15 x 16 bytes), then H^1 ... H^16 in the form the implementation
     * multiplies with (byte-reflected for the SIMD paths, plain for the portable one). */
    uint8_t rk[15 * 16] __attribute__((aligned(64)));
    uint8_t hpow[UVPN_GCM_POWERS * 16] __attribute__((aligned(64)));
    /* aesni-pclmul: each power's two 64-bit halves XORed together, in both halves (Karatsuba's
     * middle operand: 3 carry-less multiplications per block instead of 4). */
    uint8_t hkar[UVPN_GCM_POWERS * 16] __attribute__((aligned(64)));
} uvpn_gcm;

/* Which implementation runs: "vaes-avx512", "vaes-avx2", "aesni-pclmul" or "portable". */
const char *uvpn_gcm_impl(void);
/* Caps the implementation at level cap (UVPN_GCM_TOP's list; tests compare them); returns the old
 * cap. Call before any uvpn_gcm_init whose context will be used with it. */
int uvpn_gcm_cap(int cap);

void uvpn_gcm_init(uvpn_gcm *g, const uint8_t key[UVPN_GCM_KEY_LEN]);

/* General AES-256-GCM: encrypts n bytes from in to out (in == out allowed) and writes the tag
 * over aad and the ciphertext. */
void uvpn_gcm_seal(const uvpn_gcm *g, const uint8_t iv[UVPN_GCM_IV_LEN], const uint8_t *aad, size_t aad_len,
                   const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[UVPN_GCM_TAG_LEN]);
/* Verifies the tag over aad and the n bytes of ciphertext at in (constant-time compare) and only
 * then decrypts them to out (in == out allowed). 0, or -1 (out untouched) on a bad tag. */
int uvpn_gcm_open(const uvpn_gcm *g, const uint8_t iv[UVPN_GCM_IV_LEN], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, uint8_t *out, size_t n, const uint8_t tag[UVPN_GCM_TAG_LEN]);

/* The IV 0^32 || counter (big-endian) of session frames and of XUFS's sealed records. */
void uvpn_gcm_counter_iv(uint64_t counter, uint8_t iv[UVPN_GCM_IV_LEN]);

/* A session frame (head of 32 bytes, body of n bytes) under IV 0^32 || counter (big-endian):
 * enc = 0: tag = GMAC over head || body (the body is not changed; out is not written);
 * enc = 1: the body is encrypted from in to out and the head is the additional data. */
void uvpn_gcm_seal_frame(const uvpn_gcm *g, uint64_t counter, const uint8_t head[32], const uint8_t *in,
                         uint8_t *out, size_t n, int enc, uint8_t tag[UVPN_GCM_TAG_LEN]);
/* Verifies a session frame's tag and, with enc, decrypts the body in place. 0 or -1. */
int uvpn_gcm_open_frame(const uvpn_gcm *g, uint64_t counter, const uint8_t head[32], uint8_t *body, size_t n,
                        int enc, const uint8_t tag[UVPN_GCM_TAG_LEN]);

#endif
