/* fuzz/xufs_reply.c: libxufs.so's parser of the cache manager's replies (xufs/core/client.c,
 * parse_reply: exactly "OK", or "ERR " and an errno name; anything else is EIO). The file is
 * included so its static parser can be reached. */
#include "fuzz/fuzz.h"
#include "xufs/core/client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *r = malloc(size + 1);
    if (!r) return 0;
    memcpy(r, data, size);
    r[size] = 0;
    int e = parse_reply(r);
    if (e < 0) abort();
    if (e == 0 && strcmp(r, "OK") != 0) abort(); /* only "OK" is success */
    free(r);
    return 0;
}
