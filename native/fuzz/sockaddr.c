/* fuzz/sockaddr.c: decoding socket addresses that come from a program's memory (common/netio.c:
 * sa_get_v4, sa_port, sa_copy_out, as the wrappers and the supervisor use them on whatever
 * (addr, addrlen) a program passes). The input is the address bytes; its first two bytes also
 * give the length the program claims. Checks the kernel's truncation rule in sa_copy_out and that
 * a decoded IPv4 address encodes back to the same address. */
#include "fuzz/fuzz.h"
#include "common/netio.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    socklen_t claimed = (socklen_t)(data[0] | data[1] << 8);
    size_t n = size - 2;
    uint8_t *sa = malloc(n ? n : 1);
    if (!sa) return 0;
    memcpy(sa, data + 2, n);
    socklen_t len = claimed < n ? claimed : (socklen_t)n; /* never past what exists */
    uint32_t ip;
    uint16_t port;
    if (len >= sizeof(sa_family_t)) {
        if (sa_get_v4((struct sockaddr *)sa, len, &ip, &port)) {
            struct sockaddr_storage ss;
            socklen_t m = sa_make_v4(((struct sockaddr *)sa)->sa_family, ip, port, &ss);
            uint32_t ip2;
            uint16_t port2;
            if (!sa_get_v4((struct sockaddr *)&ss, m, &ip2, &port2) || ip2 != ip || port2 != port) abort();
        }
        sa_port((struct sockaddr *)sa, len);
    }
    uint8_t out[sizeof(struct sockaddr_storage) + 8];
    memset(out, 0xee, sizeof out);
    socklen_t outlen = (socklen_t)(data[0] % (sizeof(struct sockaddr_storage) + 1));
    socklen_t want = outlen;
    sa_copy_out(sa, len, (struct sockaddr *)out, &outlen);
    if (outlen != len) abort();
    for (size_t i = want < len ? want : len; i < sizeof out; i++)
        if (out[i] != 0xee) abort(); /* wrote past the caller's buffer */
    free(sa);
    return 0;
}
