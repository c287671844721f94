/* xreal_libc.c: XREAL's lookup in libmyrt.so (the supervisor's XUFS mode), which interposes
 * nothing: libc's own functions, never a preloaded library's (see xreal.h; xreal.c is libxufs.so's
 * dlsym(RTLD_NEXT), the functions behind its wrappers). The supervisor runs with the session's
 * LD_PRELOAD, libxufs.so among it: dlsym(RTLD_NEXT) from code in the executable (the sanitizer
 * build's launcher, which carries the supervisor, LAUNCHER=static) found libxufs.so's wrappers,
 * whose getxattr hides the cache manager's identity record (ENODATA: every cached file was
 * fetched again). A handle of libc finds the definition in libc itself. */
#include "xufs/core/xreal.h"

#include <dlfcn.h>
#include <gnu/lib-names.h>

void *xufs_dlsym(const char *name)
{
    static void *libc;
    int e = errno;
    void *h = __atomic_load_n(&libc, __ATOMIC_ACQUIRE);
    if (!h) { /* already loaded: the supervisor links it */
        h = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
        __atomic_store_n(&libc, h, __ATOMIC_RELEASE);
    }
    void *f = h ? dlsym(h, name) : NULL;
    errno = e;
    return f;
}
