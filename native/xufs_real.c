/* xufs_real.c: dlsym(RTLD_NEXT) lookup used by XREAL (see xufs_real.h). */
#include "xufs_real.h"

#include <dlfcn.h>

void *xufs_dlsym(const char *name)
{
    int e = errno;
    void *f = dlsym(RTLD_NEXT, name);
    errno = e;
    return f;
}
