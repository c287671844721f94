/* log.c: UVPN_DEBUG output and errno names (see log.h). Never writes to stdout. */
#include "log.h"
#include "env.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int enabled;

static void read_env(void)
{
    const char *v = uvpn_getenv("UVPN_DEBUG");
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
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf + 6, sizeof buf - 7, fmt, ap);
        va_end(ap);
        if (n >= 0) {
            if ((size_t)n > sizeof buf - 8) n = (int)(sizeof buf - 8); /* truncated */
            buf[0] = 'u'; buf[1] = 'v'; buf[2] = 'p'; buf[3] = 'n'; buf[4] = ':'; buf[5] = ' ';
            buf[6 + n] = '\n';
            ssize_t w;
            do w = write(2, buf, (size_t)n + 7);
            while (w < 0 && errno == EINTR);
        }
    }
    errno = e;
}

const char *errno_name(int e)
{
    switch (e) {
#define N(x) case x: return #x;
    N(ECONNREFUSED) N(ENETUNREACH) N(ETIMEDOUT) N(EHOSTUNREACH) N(EACCES) N(EADDRINUSE)
    N(EINVAL) N(EADDRNOTAVAIL) N(ENOENT) N(EISCONN) N(EPROTO) N(ECONNRESET) N(EPIPE)
    N(EAGAIN) N(EINPROGRESS) N(EINTR) N(ENOMEM) N(EMFILE) N(ENFILE) N(EBADF) N(ENOTSOCK)
    N(ENOSYS) N(EAFNOSUPPORT) N(EALREADY) N(ENOTCONN) N(EPERM) N(ENOBUFS) N(EIO)
#undef N
    default: {
        static __thread __attribute__((tls_model("initial-exec"))) char buf[16];
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
    }
}
