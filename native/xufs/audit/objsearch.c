/* objsearch.c: libxufs_audit.so, the loader's half of XUFS (LD_AUDIT, rtld-audit(7)). The
 * dynamic loader opens the objects it loads with its own system calls, which no LD_PRELOAD
 * wrapper sees, so a library under the mount would be read from its unfetched placeholder in
 * the cache. la_objsearch is called for every name the loader is about to open: dlopen's path
 * (LA_SER_ORIG) and each candidate of LD_LIBRARY_PATH, RUNPATH and RPATH. A name under the
 * mount (or relative to a working directory inside it) is fetched, and the loader is given its
 * cache path; a name that does not exist on A is skipped (the loader tries the next candidate);
 * every other name passes untouched. The loader itself resolves $ORIGIN, so a library's RUNPATH
 * relative to its (cache) location keeps working. Built from xufs/core only: no wrappers, no
 * constructor, so this second copy of the XUFS client (the audit namespace's) does nothing but
 * answer the loader. */
#include "xufs/core/prepare.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <link.h>
#include <string.h>

XUFS_API unsigned int la_version(unsigned int version)
{
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

XUFS_API char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    /* Not thread-local (an audit library gets little static TLS): the loader calls this with
     * its load lock held, and opens the name before it lets go. */
    static char use[PATH_MAX];
    (void)cookie;
    (void)flag;
    if (!name || !strchr(name, '/') || !xufs_on()) return (char *)name;
    xpath p;
    int track;
    int r = xp_open(AT_FDCWD, name, O_RDONLY, &p, &track);
    if (r == 0) return (char *)name;
    if (r < 0) return NULL; /* not on A (or A unreachable and not cached): the next candidate */
    const char *real = xp_real(r, &p, name);
    if (strlen(real) >= sizeof use) return NULL;
    strcpy(use, real);
    return use;
}
