/* gcm.c: AES-256-GCM (see gcm.h). Four implementations of the same function, chosen once at
 * run time from the CPU's features:
 *   vaes-avx512   AES with VAES on 4 blocks per 512-bit register, GHASH with VPCLMULQDQ over 16
 *                 blocks per reduction;
 *   vaes-avx2     the same on 2 blocks per 256-bit register (AMD Zen 3, Intel Alder Lake: VAES
 *                 and VPCLMULQDQ without AVX-512; 2.5x aesni-pclmul's GHASH on Zen 3);
 *   aesni-pclmul  AES-NI and PCLMULQDQ on 8 blocks at a time (Intel's "aggregated reduction",
 *                 Karatsuba's 3 multiplications per block: measured faster there, while the
 *                 256-bit loop is faster with 4, the extra shuffle and load costing more than
 *                 the multiplication on Zen 3);
 *   portable      the specification's algorithm in plain C (byte-oriented AES, bitwise GF(2^128)
 *                 multiplication), for other CPUs and to check the fast ones against.
 * The SIMD paths keep GHASH's operands byte-reflected (Gueron and Kounavis, "Intel Carry-Less
 * Multiplication Instruction and its Usage for Computing the GCM Mode"), so H's powers are stored
 * that way; the portable path stores them plain. */
#include "router/core/gcm.h"

#include <string.h>

/* ---- portable ------------------------------------------------------------------------------ */

static const uint8_t SBOX[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

static uint8_t xtime(uint8_t x) { return (uint8_t)((x << 1) ^ ((x >> 7) * 0x1b)); }

/* FIPS 197 key expansion for a 256-bit key: 60 words, as 15 round keys of 16 bytes. */
static void p_expand(const uint8_t key[32], uint8_t rk[240])
{
    memcpy(rk, key, 32);
    uint8_t rcon = 1;
    for (int i = 8; i < 60; i++) {
        uint8_t t[4];
        memcpy(t, rk + 4 * (i - 1), 4);
        if (i % 8 == 0) {
            uint8_t u = t[0];
            t[0] = (uint8_t)(SBOX[t[1]] ^ rcon);
            t[1] = SBOX[t[2]];
            t[2] = SBOX[t[3]];
            t[3] = SBOX[u];
            rcon = xtime(rcon);
        } else if (i % 8 == 4) {
            for (int j = 0; j < 4; j++) t[j] = SBOX[t[j]];
        }
        for (int j = 0; j < 4; j++) rk[4 * i + j] = (uint8_t)(rk[4 * (i - 8) + j] ^ t[j]);
    }
}

static void p_encrypt(const uint8_t rk[240], const uint8_t in[16], uint8_t out[16])
{
    uint8_t s[16];
    for (int i = 0; i < 16; i++) s[i] = (uint8_t)(in[i] ^ rk[i]);
    for (int r = 1; r <= 14; r++) {
        uint8_t t[16];
        /* SubBytes and ShiftRows: state column c, row j is s[4c + j]. */
        for (int c = 0; c < 4; c++)
            for (int j = 0; j < 4; j++) t[4 * c + j] = SBOX[s[4 * ((c + j) % 4) + j]];
        if (r < 14) {
            for (int c = 0; c < 4; c++) { /* MixColumns */
                uint8_t *a = t + 4 * c, x = (uint8_t)(a[0] ^ a[1] ^ a[2] ^ a[3]), a0 = a[0];
                a[0] ^= (uint8_t)(x ^ xtime((uint8_t)(a[0] ^ a[1])));
                a[1] ^= (uint8_t)(x ^ xtime((uint8_t)(a[1] ^ a[2])));
                a[2] ^= (uint8_t)(x ^ xtime((uint8_t)(a[2] ^ a[3])));
                a[3] ^= (uint8_t)(x ^ xtime((uint8_t)(a[3] ^ a0)));
            }
        }
        for (int i = 0; i < 16; i++) s[i] = (uint8_t)(t[i] ^ rk[16 * r + i]);
    }
    memcpy(out, s, 16);
}

/* x = x * h in GF(2^128), GCM's bit order (SP 800-38D, algorithm 1), without secret branches. */
static void p_gfmul(uint8_t x[16], const uint8_t h[16])
{
    uint8_t z[16] = {0}, v[16];
    memcpy(v, h, 16);
    for (int i = 0; i < 128; i++) {
        uint8_t bit = (uint8_t)-((x[i / 8] >> (7 - i % 8)) & 1);
        for (int j = 0; j < 16; j++) z[j] ^= (uint8_t)(v[j] & bit);
        uint8_t lsb = (uint8_t)-(v[15] & 1);
        for (int j = 15; j > 0; j--) v[j] = (uint8_t)((v[j] >> 1) | (v[j - 1] << 7));
        v[0] = (uint8_t)((v[0] >> 1) ^ (0xe1 & lsb));
    }
    memcpy(x, z, 16);
}

/* GHASH state y absorbs n bytes (zero-padded to whole blocks). */
static void p_ghash(uint8_t y[16], const uint8_t h[16], const uint8_t *d, size_t n)
{
    while (n > 0) {
        size_t k = n < 16 ? n : 16;
        for (size_t i = 0; i < k; i++) y[i] ^= d[i];
        p_gfmul(y, h);
        d += k;
        n -= k;
    }
}

static void inc32(uint8_t ctr[16])
{
    for (int i = 15; i >= 12; i--)
        if (++ctr[i]) break;
}

/* CTR from counter block ctr (already J0 + 1), n bytes from in to out. */
static void p_ctr(const uint8_t rk[240], const uint8_t j1[16], const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t ctr[16], ks[16];
    memcpy(ctr, j1, 16);
    while (n > 0) {
        size_t k = n < 16 ? n : 16;
        p_encrypt(rk, ctr, ks);
        for (size_t i = 0; i < k; i++) out[i] = (uint8_t)(in[i] ^ ks[i]);
        inc32(ctr);
        in += k;
        out += k;
        n -= k;
    }
}

/* ---- x86-64: AES-NI + PCLMULQDQ, and VAES + VPCLMULQDQ ----------------------------------- */

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#define T128 __attribute__((target("aes,pclmul,ssse3,sse4.1")))
#define T256 __attribute__((target("aes,pclmul,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")))
#define T512 __attribute__((target("aes,pclmul,ssse3,sse4.1,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq")))
/* The SIMD loops over blocks and rounds are unrolled completely: their blocks then stay in
 * registers (at -O2 gcc kept them on the stack, a store and a load around every AES round: CTR
 * ran at 0.5 GB/s with AES-NI, 2-4 GB/s with VAES). */
#define UNROLL _Pragma("GCC unroll 16")

static T128 inline __m128i bswap128(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

static T128 inline __m128i assist1(__m128i t1, __m128i t2)
{
    t2 = _mm_shuffle_epi32(t2, 0xff);
    __m128i t4 = _mm_slli_si128(t1, 4);
    t1 = _mm_xor_si128(t1, t4);
    t4 = _mm_slli_si128(t4, 4);
    t1 = _mm_xor_si128(t1, t4);
    t4 = _mm_slli_si128(t4, 4);
    t1 = _mm_xor_si128(t1, t4);
    return _mm_xor_si128(t1, t2);
}

static T128 inline __m128i assist2(__m128i t1, __m128i t3)
{
    __m128i t2 = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t1, 0), 0xaa);
    __m128i t4 = _mm_slli_si128(t3, 4);
    t3 = _mm_xor_si128(t3, t4);
    t4 = _mm_slli_si128(t4, 4);
    t3 = _mm_xor_si128(t3, t4);
    t4 = _mm_slli_si128(t4, 4);
    t3 = _mm_xor_si128(t3, t4);
    return _mm_xor_si128(t3, t2);
}

#define EXPAND_STEP(i, rcon)                                                                       \
    do {                                                                                           \
        t1 = assist1(t1, _mm_aeskeygenassist_si128(t3, rcon));                                     \
        rk[i] = t1;                                                                                \
        if ((i) < 14) rk[(i) + 1] = t3 = assist2(t1, t3);                                          \
    } while (0)

static T128 void x_expand(const uint8_t key[32], __m128i rk[15])
{
    __m128i t1 = _mm_loadu_si128((const __m128i *)key), t3 = _mm_loadu_si128((const __m128i *)(key + 16));
    rk[0] = t1;
    rk[1] = t3;
    EXPAND_STEP(2, 0x01);
    EXPAND_STEP(4, 0x02);
    EXPAND_STEP(6, 0x04);
    EXPAND_STEP(8, 0x08);
    EXPAND_STEP(10, 0x10);
    EXPAND_STEP(12, 0x20);
    EXPAND_STEP(14, 0x40);
}

static T128 inline __m128i x_encrypt1(const __m128i *rk, __m128i b)
{
    b = _mm_xor_si128(b, rk[0]);
    UNROLL
    for (int r = 1; r < 14; r++) b = _mm_aesenc_si128(b, rk[r]);
    return _mm_aesenclast_si128(b, rk[14]);
}

/* The unreduced product of a and b added to (lo, mid, hi). */
static T128 inline void mul_acc(__m128i a, __m128i b, __m128i *lo, __m128i *mid, __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
    *mid = _mm_xor_si128(*mid, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01)));
}

/* Karatsuba: the products of a's and b's low halves (lo) and high halves (hi) added in, and the
 * product of a's halves' sum with bk (b's halves' sum, from hkar) added to m; the middle term is
 * then m + lo + hi (karatsuba_mid). */
static T128 inline void mul_acc_k(__m128i a, __m128i b, __m128i bk, __m128i *lo, __m128i *m, __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
    *m = _mm_xor_si128(*m, _mm_clmulepi64_si128(_mm_xor_si128(a, _mm_shuffle_epi32(a, 0x4e)), bk, 0x00));
}

static T128 inline __m128i karatsuba_mid(__m128i lo, __m128i m, __m128i hi)
{
    return _mm_xor_si128(m, _mm_xor_si128(lo, hi));
}

/* Reduces a 256-bit product (of byte-reflected operands) modulo GCM's polynomial. */
static T128 inline __m128i reduce(__m128i lo, __m128i mid, __m128i hi)
{
    __m128i t3 = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    __m128i t6 = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    __m128i t7 = _mm_srli_epi32(t3, 31), t8 = _mm_srli_epi32(t6, 31);
    t3 = _mm_slli_epi32(t3, 1);
    t6 = _mm_slli_epi32(t6, 1);
    __m128i t9 = _mm_srli_si128(t7, 12);
    t8 = _mm_slli_si128(t8, 4);
    t7 = _mm_slli_si128(t7, 4);
    t3 = _mm_or_si128(t3, t7);
    t6 = _mm_or_si128(_mm_or_si128(t6, t8), t9);
    t7 = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(t3, 31), _mm_slli_epi32(t3, 30)), _mm_slli_epi32(t3, 25));
    t8 = _mm_srli_si128(t7, 4);
    t7 = _mm_slli_si128(t7, 12);
    t3 = _mm_xor_si128(t3, t7);
    __m128i t2 = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(t3, 1), _mm_srli_epi32(t3, 2)), _mm_srli_epi32(t3, 7));
    t2 = _mm_xor_si128(t2, t8);
    t3 = _mm_xor_si128(t3, t2);
    return _mm_xor_si128(t6, t3);
}

static T128 inline __m128i gfmul(__m128i a, __m128i b)
{
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
    mul_acc(a, b, &lo, &mid, &hi);
    return reduce(lo, mid, hi);
}

static T128 void x_init(uvpn_gcm *g, const uint8_t key[32])
{
    __m128i rk[15];
    x_expand(key, rk);
    memcpy(g->rk, rk, sizeof rk);
    __m128i h = bswap128(x_encrypt1(rk, _mm_setzero_si128())), p = h;
    /* hpow[i] = H^(16 - i): the order a group of 16 blocks is multiplied with. */
    for (int i = UVPN_GCM_POWERS - 1; i >= 0; i--) {
        _mm_store_si128((__m128i *)(g->hpow + 16 * i), p);
        __m128i k = _mm_xor_si128(p, _mm_shuffle_epi32(p, 0x4e)); /* both halves: lo ^ hi */
        _mm_store_si128((__m128i *)(g->hkar + 16 * i), k);
        p = gfmul(p, h);
    }
}

static T128 inline __m128i load_block(const uint8_t *d, size_t k)
{
    if (k == 16) return _mm_loadu_si128((const __m128i *)d);
    uint8_t b[16] = {0};
    memcpy(b, d, k);
    return _mm_loadu_si128((const __m128i *)b);
}

/* GHASH, 8 blocks per reduction: y (byte-reflected) absorbs n bytes, zero-padded. */
static T128 __m128i x_ghash(const uvpn_gcm *g, __m128i y, const uint8_t *d, size_t n)
{
    const __m128i *hp = (const __m128i *)g->hpow, *hk = (const __m128i *)g->hkar;
    while (n >= 128) {
        __m128i lo = _mm_setzero_si128(), m = lo, hi = lo;
        UNROLL
        for (int i = 0; i < 8; i++) {
            __m128i x = bswap128(_mm_loadu_si128((const __m128i *)(d + 16 * i)));
            if (i == 0) x = _mm_xor_si128(x, y);
            mul_acc_k(x, _mm_load_si128(hp + 8 + i), _mm_load_si128(hk + 8 + i), &lo, &m, &hi);
        }
        y = reduce(lo, karatsuba_mid(lo, m, hi), hi);
        d += 128;
        n -= 128;
    }
    while (n > 0) {
        size_t k = n < 16 ? n : 16;
        y = gfmul(_mm_xor_si128(y, bswap128(load_block(d, k))), _mm_load_si128(hp + 15));
        d += k;
        n -= k;
    }
    return y;
}

static T128 inline __m128i ctr_block(__m128i j0r, uint32_t i)
{
    /* j0r is the counter block byte-reversed: its 32-bit counter is the lowest lane. */
    return bswap128(_mm_add_epi32(j0r, _mm_cvtsi32_si128((int)i)));
}

/* CTR: n bytes from in to out with counter blocks J0 + 1, J0 + 2, ...; 8 blocks at a time. */
static T128 void x_ctr(const uvpn_gcm *g, __m128i j0r, const uint8_t *in, uint8_t *out, size_t n)
{
    const __m128i *rk = (const __m128i *)g->rk;
    uint32_t c = 1;
    while (n >= 128) {
        __m128i b[8];
        UNROLL
        for (int i = 0; i < 8; i++) b[i] = _mm_xor_si128(ctr_block(j0r, c + (uint32_t)i), rk[0]);
        UNROLL
        for (int r = 1; r < 14; r++)
            UNROLL
            for (int i = 0; i < 8; i++) b[i] = _mm_aesenc_si128(b[i], rk[r]);
        UNROLL
        for (int i = 0; i < 8; i++) {
            b[i] = _mm_aesenclast_si128(b[i], rk[14]);
            _mm_storeu_si128((__m128i *)(out + 16 * i), _mm_xor_si128(b[i], _mm_loadu_si128((const __m128i *)(in + 16 * i))));
        }
        c += 8;
        in += 128;
        out += 128;
        n -= 128;
    }
    while (n > 0) {
        size_t k = n < 16 ? n : 16;
        uint8_t ks[16];
        _mm_storeu_si128((__m128i *)ks, x_encrypt1(rk, ctr_block(j0r, c++)));
        for (size_t i = 0; i < k; i++) out[i] = (uint8_t)(in[i] ^ ks[i]);
        in += k;
        out += k;
        n -= k;
    }
}

/* ---- AVX2 with VAES and VPCLMULQDQ: 2 blocks per register, 16 per GHASH reduction ------- */

static T256 inline __m128i fold256(__m256i v)
{
    return _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

static T256 __m128i y_ghash(const uvpn_gcm *g, __m128i y, const uint8_t *d, size_t n)
{
    if (n >= 256) {
        const __m256i mask = _mm256_broadcastsi128_si256(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        __m256i h[8]; /* h[i]: H^(16 - 2i), H^(15 - 2i), for blocks 2i and 2i + 1 of a group */
        UNROLL
        for (int i = 0; i < 8; i++) h[i] = _mm256_load_si256((const __m256i *)(g->hpow + 32 * i));
        while (n >= 256) {
            __m256i lo = _mm256_setzero_si256(), mid = lo, hi = lo;
            UNROLL
            for (int i = 0; i < 8; i++) {
                __m256i x = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(d + 32 * i)), mask);
                if (i == 0) x = _mm256_xor_si256(x, _mm256_zextsi128_si256(y));
                lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(x, h[i], 0x00));
                hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(x, h[i], 0x11));
                mid = _mm256_xor_si256(mid, _mm256_xor_si256(_mm256_clmulepi64_epi128(x, h[i], 0x10),
                                                             _mm256_clmulepi64_epi128(x, h[i], 0x01)));
            }
            y = reduce(fold256(lo), fold256(mid), fold256(hi));
            d += 256;
            n -= 256;
        }
    }
    return x_ghash(g, y, d, n);
}

static T256 void y_ctr(const uvpn_gcm *g, __m128i j0r, const uint8_t *in, uint8_t *out, size_t n)
{
    if (n >= 256) {
        const __m256i mask = _mm256_broadcastsi128_si256(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        __m256i base = _mm256_add_epi32(_mm256_broadcastsi128_si256(j0r), _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 1));
        const __m256i two = _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 2);
        uint32_t done = 0;
        while (n >= 256) {
            __m256i b[8], c = base;
            __m256i k = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)g->rk));
            UNROLL
            for (int i = 0; i < 8; i++) {
                b[i] = _mm256_xor_si256(_mm256_shuffle_epi8(c, mask), k);
                c = _mm256_add_epi32(c, two);
            }
            base = c;
            UNROLL
            for (int r = 1; r < 14; r++) {
                k = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(g->rk + 16 * r)));
                UNROLL
                for (int i = 0; i < 8; i++) b[i] = _mm256_aesenc_epi128(b[i], k);
            }
            k = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(g->rk + 16 * 14)));
            UNROLL
            for (int i = 0; i < 8; i++) {
                b[i] = _mm256_aesenclast_epi128(b[i], k);
                _mm256_storeu_si256((__m256i *)(out + 32 * i), _mm256_xor_si256(b[i], _mm256_loadu_si256((const __m256i *)(in + 32 * i))));
            }
            done += 16;
            in += 256;
            out += 256;
            n -= 256;
        }
        j0r = _mm_add_epi32(j0r, _mm_cvtsi32_si128((int)done));
    }
    x_ctr(g, j0r, in, out, n);
}

/* ---- AVX-512: 16 blocks per GHASH reduction, 16 AES blocks in flight ---------------------- */

static T512 inline __m512i bswap512(__m512i x)
{
    const __m512i m = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    return _mm512_shuffle_epi8(x, m);
}

static T512 inline __m128i fold512(__m512i v)
{
    __m256i t = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_xor_si128(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

static T512 __m128i z_ghash(const uvpn_gcm *g, __m128i y, const uint8_t *d, size_t n)
{
    if (n >= 256) {
        __m512i h[4];
        UNROLL
        for (int i = 0; i < 4; i++) h[i] = _mm512_load_si512((const void *)(g->hpow + 64 * i));
        while (n >= 256) {
            __m512i lo = _mm512_setzero_si512(), mid = lo, hi = lo;
            UNROLL
            for (int i = 0; i < 4; i++) {
                __m512i x = bswap512(_mm512_loadu_si512((const void *)(d + 64 * i)));
                if (i == 0) x = _mm512_xor_si512(x, _mm512_zextsi128_si512(y));
                lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(x, h[i], 0x00));
                hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(x, h[i], 0x11));
                mid = _mm512_ternarylogic_epi64(mid, _mm512_clmulepi64_epi128(x, h[i], 0x10),
                                                _mm512_clmulepi64_epi128(x, h[i], 0x01), 0x96);
            }
            y = reduce(fold512(lo), fold512(mid), fold512(hi));
            d += 256;
            n -= 256;
        }
    }
    return x_ghash(g, y, d, n);
}

static T512 void z_ctr(const uvpn_gcm *g, __m128i j0r, const uint8_t *in, uint8_t *out, size_t n)
{
    if (n >= 256) {
        __m512i rk[15];
        UNROLL
        for (int r = 0; r < 15; r++) rk[r] = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(g->rk + 16 * r)));
        const __m512i mask = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        __m512i base = _mm512_add_epi32(_mm512_broadcast_i32x4(j0r), _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1));
        const __m512i four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
        uint32_t done = 0;
        while (n >= 256) {
            __m512i b[4], c = base;
            UNROLL
            for (int i = 0; i < 4; i++) {
                b[i] = _mm512_xor_si512(_mm512_shuffle_epi8(c, mask), rk[0]);
                c = _mm512_add_epi32(c, four);
            }
            base = c;
            UNROLL
            for (int r = 1; r < 14; r++)
                UNROLL
                for (int i = 0; i < 4; i++) b[i] = _mm512_aesenc_epi128(b[i], rk[r]);
            UNROLL
            for (int i = 0; i < 4; i++) {
                b[i] = _mm512_aesenclast_epi128(b[i], rk[14]);
                _mm512_storeu_si512((void *)(out + 64 * i), _mm512_xor_si512(b[i], _mm512_loadu_si512((const void *)(in + 64 * i))));
            }
            done += 16;
            in += 256;
            out += 256;
            n -= 256;
        }
        j0r = _mm_add_epi32(j0r, _mm_cvtsi32_si128((int)done));
    }
    x_ctr(g, j0r, in, out, n);
}

static int cpu_level(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int aes = (c >> 25) & 1, pclmul = (c >> 1) & 1, sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
    if (!(aes && pclmul && sse41 && ssse3)) return 0;
    int level = 1;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (osxsave && avx && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        int avx2 = (b >> 5) & 1;
        int avx512 = avx2 && ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1); /* F, BW, VL */
        int vaes = (c >> 9) & 1, vpclmul = (c >> 10) & 1;
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        (void)hi;
        if (avx2 && vaes && vpclmul && (lo & 0x06) == 0x06) level = 2;        /* XMM, YMM state */
        if (avx512 && vaes && vpclmul && (lo & 0xe6) == 0xe6) level = 3;      /* and ZMM state */
    }
    return level;
}
#else
static int cpu_level(void) { return 0; }
#endif

/* ---- dispatch ------------------------------------------------------------------------------ */

static int level = -1;  /* 0 portable, 1 aesni-pclmul, 2 vaes-avx2, 3 vaes-avx512 */
static int cap = UVPN_GCM_TOP;

static int impl_level(void)
{
    if (level < 0) level = cpu_level();
    return level < cap ? level : cap;
}

const char *uvpn_gcm_impl(void)
{
    static const char *names[] = {"portable", "aesni-pclmul", "vaes-avx2", "vaes-avx512"};
    return names[impl_level()];
}

int uvpn_gcm_cap(int new_cap)
{
    int old = cap;
    cap = new_cap < 0 ? 0 : new_cap > UVPN_GCM_TOP ? UVPN_GCM_TOP : new_cap;
    return old;
}

void uvpn_gcm_init(uvpn_gcm *g, const uint8_t key[UVPN_GCM_KEY_LEN])
{
    memset(g, 0, sizeof *g);
#if defined(__x86_64__)
    if (impl_level() > 0) {
        x_init(g, key);
        return;
    }
#endif
    p_expand(key, g->rk);
    uint8_t zero[16] = {0};
    p_encrypt(g->rk, zero, g->hpow + 16 * (UVPN_GCM_POWERS - 1));
}

static void len_block(uint8_t b[16], size_t aad_len, size_t n)
{
    uint64_t a = (uint64_t)aad_len * 8, c = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(a >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(c >> (56 - 8 * i));
    }
}

/* One GCM computation: the tag over (aad1 || aad2) and the ciphertext; with enc, the CTR
 * transform from in to out first (seal) or after the tag is checked (open: the caller passes
 * the ciphertext as `in` and decrypts afterwards). aad1_len must be a multiple of 16 when aad2 is
 * not empty. */
static void gcm_core(const uvpn_gcm *g, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                     const uint8_t *aad2, size_t aad2_len, const uint8_t *ct, size_t n, uint8_t tag[16])
{
    uint8_t j0[16], lens[16];
    memcpy(j0, iv, 12);
    j0[12] = j0[13] = j0[14] = 0;
    j0[15] = 1;
    len_block(lens, aad1_len + aad2_len, n);
    int lv = impl_level();
#if defined(__x86_64__)
    if (lv > 0) {
        __m128i y = _mm_setzero_si128();
        __m128i (*gh)(const uvpn_gcm *, __m128i, const uint8_t *, size_t) = lv == 3 ? z_ghash : lv == 2 ? y_ghash : x_ghash;
        y = gh(g, y, aad1, aad1_len);
        y = gh(g, y, aad2, aad2_len);
        y = gh(g, y, ct, n);
        y = x_ghash(g, y, lens, 16);
        __m128i ek = x_encrypt1((const __m128i *)g->rk, _mm_loadu_si128((const __m128i *)j0));
        _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(bswap128(y), ek));
        return;
    }
#endif
    (void)lv;
    const uint8_t *h = g->hpow + 16 * (UVPN_GCM_POWERS - 1);
    uint8_t y[16] = {0}, ek[16];
    p_ghash(y, h, aad1, aad1_len);
    p_ghash(y, h, aad2, aad2_len);
    p_ghash(y, h, ct, n);
    p_ghash(y, h, lens, 16);
    p_encrypt(g->rk, j0, ek);
    for (int i = 0; i < 16; i++) tag[i] = (uint8_t)(y[i] ^ ek[i]);
}

static void ctr(const uvpn_gcm *g, const uint8_t iv[12], const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t j1[16];
    memcpy(j1, iv, 12);
    j1[12] = j1[13] = j1[14] = 0;
    j1[15] = 2;
#if defined(__x86_64__)
    int lv = impl_level();
    if (lv > 0) {
        j1[15] = 1; /* x_ctr and z_ctr start at J0 + 1 themselves */
        __m128i j0r = bswap128(_mm_loadu_si128((const __m128i *)j1));
        if (lv == 3) z_ctr(g, j0r, in, out, n);
        else if (lv == 2) y_ctr(g, j0r, in, out, n);
        else x_ctr(g, j0r, in, out, n);
        return;
    }
#endif
    p_ctr(g->rk, j1, in, out, n);
}

static int ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t d = 0;
    for (size_t i = 0; i < n; i++) d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

void uvpn_gcm_seal(const uvpn_gcm *g, const uint8_t iv[UVPN_GCM_IV_LEN], const uint8_t *aad, size_t aad_len,
                   const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[UVPN_GCM_TAG_LEN])
{
    ctr(g, iv, in, out, n);
    gcm_core(g, iv, aad, aad_len, NULL, 0, out, n, tag);
}

int uvpn_gcm_open(const uvpn_gcm *g, const uint8_t iv[UVPN_GCM_IV_LEN], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, uint8_t *out, size_t n, const uint8_t tag[UVPN_GCM_TAG_LEN])
{
    uint8_t want[16];
    gcm_core(g, iv, aad, aad_len, NULL, 0, in, n, want);
    if (!ct_equal(want, tag, 16)) return -1;
    ctr(g, iv, in, out, n);
    return 0;
}

void uvpn_gcm_counter_iv(uint64_t counter, uint8_t iv[UVPN_GCM_IV_LEN])
{
    memset(iv, 0, 4);
    for (int i = 0; i < 8; i++) iv[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

void uvpn_gcm_seal_frame(const uvpn_gcm *g, uint64_t counter, const uint8_t head[32], const uint8_t *in,
                         uint8_t *out, size_t n, int enc, uint8_t tag[UVPN_GCM_TAG_LEN])
{
    uint8_t iv[12];
    uvpn_gcm_counter_iv(counter, iv);
    if (enc) {
        ctr(g, iv, in, out, n);
        gcm_core(g, iv, head, 32, NULL, 0, out, n, tag);
    } else {
        gcm_core(g, iv, head, 32, in, n, NULL, 0, tag);
    }
}

int uvpn_gcm_open_frame(const uvpn_gcm *g, uint64_t counter, const uint8_t head[32], uint8_t *body, size_t n,
                        int enc, const uint8_t tag[UVPN_GCM_TAG_LEN])
{
    uint8_t iv[12], want[16];
    uvpn_gcm_counter_iv(counter, iv);
    if (enc) gcm_core(g, iv, head, 32, NULL, 0, body, n, want);
    else gcm_core(g, iv, head, 32, body, n, NULL, 0, want);
    if (!ct_equal(want, tag, 16)) return -1;
    if (enc) ctr(g, iv, body, body, n);
    return 0;
}
