/* fuzz/key.c: the network key file parser (common/wire.c, uvpn_key_parse: 64 hex digits, then
 * only white space). A parsed key must print back as the first 64 characters, lower-cased. */
#include "fuzz/fuzz.h"
#include "common/wire.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[UVPN_KEY_LEN];
    if (uvpn_key_parse((const char *)data, size, key) != 0) return 0;
    if (size < 2 * UVPN_KEY_LEN) abort();
    char hex[3];
    for (size_t i = 0; i < UVPN_KEY_LEN; i++) {
        snprintf(hex, sizeof hex, "%02x", key[i]);
        if (tolower(data[2 * i]) != hex[0] || tolower(data[2 * i + 1]) != hex[1]) abort();
    }
    return 0;
}
