/* vectors.h: what the C checkers of tests/vectors/wire.txt (test_wire.c, test_router.c) share:
 * opening the vectors file named by their one argument. */
#ifndef MYRT_TESTS_VECTORS_H
#define MYRT_TESTS_VECTORS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The file named by argv[1], or NULL after a message (the caller exits 2). */
static inline FILE *open_vectors(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/vectors/wire.txt\n", argv[0]);
        return NULL;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
    return f;
}

#endif
