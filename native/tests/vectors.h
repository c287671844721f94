/* vectors.h: what the C checkers of tests/vectors/wire.txt (test_wire.c, test_router.c) share:
 * opening the vectors file named by their one argument, and reading hex fields. */
#ifndef MYRT_TESTS_VECTORS_H
#define MYRT_TESTS_VECTORS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Parses hex s ("-" is empty) into out (at most cap bytes); the byte count, or -1. */
static inline long unhex(const char *s, uint8_t *out, size_t cap)
{
    if (strcmp(s, "-") == 0) return 0;
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return (long)(n / 2);
}

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
