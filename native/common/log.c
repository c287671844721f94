/* log.c: debug output and errno names (see log.h). Never writes to stdout. Shared by libuvpn.so
 * and libxufs.so: the Makefile compiles it once per library with LOG_TAG / LOG_ENV set. */
#include "common/log.h"
#include "common/real.h"
#include "common/env.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LOG_TAG
#define LOG_TAG "uvpn"
#endif
#ifndef LOG_ENV
#define LOG_ENV "UVPN_DEBUG"
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int enabled;

static void read_env(void)
{
    const char *v = uvpn_getenv(LOG_ENV);
    enabled = v && *v;
}

int log_enabled(void)
{
    pthread_once(&once, read_env);
    return enabled;
}

void dbg(const char *fmt, ...)
{
    int e = errno;
    if (log_enabled()) {
        char buf[512];
        const size_t tl = sizeof LOG_TAG + 1; /* "tag: " */
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf + tl, sizeof buf - tl - 1, fmt, ap);
        va_end(ap);
        if (n >= 0) {
            if ((size_t)n > sizeof buf - tl - 2) n = (int)(sizeof buf - tl - 2); /* truncated */
            memcpy(buf, LOG_TAG ": ", tl);
            buf[tl + (size_t)n] = '\n';
            ssize_t w;
            real_init();
            do w = real.write(2, buf, tl + (size_t)n + 1);
            while (w < 0 && errno == EINTR);
        }
    }
    errno = e;
}

#define ERRNO_NAMES(N) \
    N(ECONNREFUSED) N(ENETUNREACH) N(ETIMEDOUT) N(EHOSTUNREACH) N(EACCES) N(EADDRINUSE) \
    N(EINVAL) N(EADDRNOTAVAIL) N(ENOENT) N(EISCONN) N(EPROTO) N(ECONNRESET) N(EPIPE) \
    N(EAGAIN) N(EINPROGRESS) N(EINTR) N(ENOMEM) N(EMFILE) N(ENFILE) N(EBADF) N(ENOTSOCK) \
    N(ENOSYS) N(EAFNOSUPPORT) N(EALREADY) N(ENOTCONN) N(EPERM) N(ENOBUFS) N(EIO) \
    N(EEXIST) N(ENOTDIR) N(EISDIR) N(ENOTEMPTY) N(EXDEV) N(EROFS) N(ENOSPC) N(ELOOP) \
    N(ENAMETOOLONG) N(EFBIG) N(EDQUOT) N(ETXTBSY) N(EBUSY) N(EMLINK) N(ESTALE) \
    N(EOPNOTSUPP) N(ERANGE) N(ENODATA) N(ECANCELED) N(EHOSTDOWN)

const char *errno_name(int e)
{
    switch (e) {
#define N(x) case x: return #x;
    ERRNO_NAMES(N)
#undef N
    default: {
        static __thread __attribute__((tls_model("initial-exec"))) char buf[16];
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
    }
}

int errno_from_name(const char *name)
{
#define N(x) if (strcmp(name, #x) == 0) return x;
    ERRNO_NAMES(N)
#undef N
    if (strcmp(name, "ENOTSUP") == 0) return ENOTSUP;
    if (strcmp(name, "EWOULDBLOCK") == 0) return EWOULDBLOCK;
    return 0;
}
