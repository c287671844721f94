/* xreal.c: dlsym(RTLD_NEXT) lookup used by XREAL (see xreal.h). */
#include "xufs/core/xreal.h"

#include <dlfcn.h>

void *xufs_dlsym(const char *name)
{
    int e = errno;
    void *f = dlsym(RTLD_NEXT, name);
    errno = e;
    return f;
}
