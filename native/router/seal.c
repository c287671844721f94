/* seal.c: libuvpnrouter.so's FFI entry points for XUFS's sealed records (docs/XUFS.md, "File
 * protocol"; xufs/seal.ts frames the stream and calls these through ffi/librouter.ts). A record is
 * u32 length (big-endian: ciphertext and tag) then AES-256-GCM of at most 64 KiB of the stream,
 * the 96-bit IV 0^32 || record number (big-endian), the length as additional data. The routers'
 * AES-GCM (router/core/gcm.c: VAES/AVX-512 or AES-NI where the CPU has them) seals about 20 times
 * faster than Deno's node:crypto. The caller owns the context's memory (a buffer of
 * uvpn_seal_ctx_size() bytes that the garbage collector frees; the context is its 64-byte aligned
 * part), so a record opened after its connection closed can never touch freed memory. */
#include "router/core/gcm.h"
#include "common/bytes.h"

#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))
#define RECORD_MAX (64 * 1024)

static uvpn_gcm *ctx_of(uint8_t *buf) { return (uvpn_gcm *)(((uintptr_t)buf + 63) & ~(uintptr_t)63); }

/* The size of the buffer a context needs (it is aligned inside it). */
EXPORT uint32_t uvpn_seal_ctx_size(void) { return (uint32_t)(sizeof(uvpn_gcm) + 63); }

/* Expands key (32 bytes) into the context in buf (uvpn_seal_ctx_size() bytes). */
EXPORT void uvpn_seal_init(uint8_t *buf, const uint8_t *key) { uvpn_gcm_init(ctx_of(buf), key); }

/* Seals n bytes (at most 64 KiB) as record number `number` into out: head, ciphertext and tag
 * (n + 20 bytes). The bytes written, or -1 when n is too large. */
EXPORT int uvpn_seal_record(uint8_t *buf, uint64_t number, const uint8_t *in, uint32_t n, uint8_t *out)
{
    if (n > RECORD_MAX) return -1;
    uint8_t iv[UVPN_GCM_IV_LEN];
    uvpn_gcm_counter_iv(number, iv);
    put32(out, n + UVPN_GCM_TAG_LEN);
    uvpn_gcm_seal(ctx_of(buf), iv, out, 4, in, out + 4, n, out + 4 + n);
    return (int)(n + 4 + UVPN_GCM_TAG_LEN);
}

/* Opens record number `number`: head (its 4 bytes) and body (len bytes: ciphertext and tag, len
 * = the head's value). Decrypts the ciphertext in place: its length, or -1 when the record does
 * not authenticate (the body is then unchanged). */
EXPORT int uvpn_open_record(uint8_t *buf, uint64_t number, const uint8_t *head, uint8_t *body, uint32_t len)
{
    if (len < UVPN_GCM_TAG_LEN || len > RECORD_MAX + UVPN_GCM_TAG_LEN || get32(head) != len) return -1;
    uint8_t iv[UVPN_GCM_IV_LEN];
    uvpn_gcm_counter_iv(number, iv);
    uint32_t n = len - UVPN_GCM_TAG_LEN;
    return uvpn_gcm_open(ctx_of(buf), iv, head, 4, body, body, n, body + n) == 0 ? (int)n : -1;
}
