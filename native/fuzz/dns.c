/* fuzz/dns.c: the supervisor's DNS stub parser and answer builder (supervisor/dnsstub.c,
 * dns_answer) on untrusted queries. The overlay's name service is replaced by a deterministic
 * stand-in (names starting with 'a' are overlay hosts, 'd' a router that is down, 'u' unknown;
 * addresses whose low byte is even have names), so every answer path is reached without a
 * router. Checks that an answer never claims more bytes than the buffer holds and that it echoes
 * the query's id. */
#include "fuzz/fuzz.h"
#include "supervisor/dnsstub.h"
#include "uvpn/core/names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nm_lookup(const char *host, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    if (n == 0) return NM_NOT_OVERLAY;
    switch (host[0]) {
    case 'a':
        *ip = 0x64400000u | (uint32_t)n;
        snprintf(canon, UVPN_NAME_MAX + 1, "%.*s", (int)(n > UVPN_NAME_MAX ? UVPN_NAME_MAX : n), host);
        return NM_FOUND;
    case 'd': return NM_DOWN;
    case 'u': return NM_UNKNOWN;
    default: return NM_NOT_OVERLAY;
    }
}

int nm_lookup_addr(uint32_t ip, char name[UVPN_NAME_MAX + 1])
{
    if ((ip & 0xffc00000u) != 0x64400000u) return NM_NOT_OVERLAY;
    if (ip & 1) return (ip & 2) ? NM_DOWN : NM_UNKNOWN;
    memset(name, 'n', UVPN_NAME_MAX); /* the longest name there is */
    name[UVPN_NAME_MAX] = 0;
    return NM_FOUND;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *q = malloc(size ? size : 1), *out = malloc(65535);
    if (!q || !out) goto done;
    memcpy(q, data, size);
    long n = dns_answer(q, size, out, 65535);
    if (n > 65535) abort();
    if (n >= 2 && (out[0] != q[0] || out[1] != q[1])) abort();
done:
    free(q);
    free(out);
    return 0;
}
