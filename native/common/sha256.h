/* sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104). Owns nothing else.
 * Self-contained, no allocation, safe to use from any thread (state is caller-owned). */
#ifndef UVPN_SHA256_H
#define UVPN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK_LEN 64
#define SHA256_DIGEST_LEN 32

typedef struct {
    uint32_t h[8];
    uint64_t total;                 /* bytes hashed so far */
    uint8_t buf[SHA256_BLOCK_LEN];  /* pending partial block */
    size_t buf_len;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_DIGEST_LEN]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

typedef struct {
    sha256_ctx inner, outer;
} hmac_sha256_ctx;

void hmac_sha256_init(hmac_sha256_ctx *c, const void *key, size_t key_len);
void hmac_sha256_update(hmac_sha256_ctx *c, const void *data, size_t len);
void hmac_sha256_final(hmac_sha256_ctx *c, uint8_t out[SHA256_DIGEST_LEN]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[SHA256_DIGEST_LEN]);

#endif
