/* mmap.c: libxufs.so's wrappers of memory mappings (mmap, mmap64, munmap, msync, mremap). A
 * file under the mount mapped MAP_SHARED with PROT_WRITE stays open for writing until its last
 * mapping goes, however early its fd is closed: writes through the mapping after close() are
 * sent at munmap (or at exit), and at once on msync(MS_SYNC). */
#include "xufs/core/fdtrack.h"
#include "xufs/core/xreal.h"

#include <stdarg.h>
#include <sys/mman.h>

static int writable_shared(int prot, int flags)
{
    return (prot & PROT_WRITE) && (flags & (MAP_SHARED | MAP_SHARED_VALIDATE)) && !(flags & MAP_ANONYMOUS);
}

XUFS_API void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *m = RCALL(mmap, MAP_FAILED, addr, len, prot, flags, fd, off);
    if (m != MAP_FAILED && writable_shared(prot, flags) && xfd_maybe(fd)) xfd_mapped(fd, m, len);
    return m;
}

XUFS_API void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    void *m = RCALL(mmap64, MAP_FAILED, addr, len, prot, flags, fd, off);
    if (m != MAP_FAILED && writable_shared(prot, flags) && xfd_maybe(fd)) xfd_mapped(fd, m, len);
    return m;
}

XUFS_API int munmap(void *addr, size_t len)
{
    int r = RCALL(munmap, -1, addr, len);
    if (r == 0 && xfd_unmapped(addr, len) < 0) return -1; /* errno EIO: not durable */
    return r;
}

XUFS_API int msync(void *addr, size_t len, int flags)
{
    int r = RCALL(msync, -1, addr, len, flags);
    if (r == 0 && (flags & MS_SYNC) && xfd_msynced(addr, len) < 0) return -1;
    return r;
}

XUFS_API void *mremap(void *old, size_t oldlen, size_t len, int flags, ...)
{
    void *want = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want = va_arg(ap, void *);
        va_end(ap);
    }
    void *m = RCALL(mremap, MAP_FAILED, old, oldlen, len, flags, want);
    if (m != MAP_FAILED) xfd_remapped(old, oldlen, m, len);
    return m;
}
