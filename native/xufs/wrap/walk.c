/* walk.c: libxufs.so's directory wrappers: opendir/fdopendir/scandir* (LIST, then the
 * real call on the cache directory), and the walkers whose glibc internals bypass the PLT —
 * nftw/ftw (TREE, then a thread-local trampoline hands mount paths to the callback), glibc
 * fts_open/fts_read/fts_children/fts_close (TREE; fts_path of the entry returned last is shown
 * as a mount path until the next call), and glob (LIST or TREE of the fixed prefix; results
 * translated). A path relative to a cache directory is handed through unchanged, so results
 * stay relative as the program expects. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <fts.h>
#include <glob.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- opendir, scandir ---- */

/* LOOKUP + LIST of an XUFS directory path. 1/0/-1 as xp_lookup. */
static int prep_dir(int dirfd, const char *path, xpath *p)
{
    int r = xp_lookup(dirfd, path, 1, p);
    if (r <= 0) return r;
    return xufs_list(p->rel) < 0 && errno != ENOTDIR ? -1 : 1;
}

XUFS_API DIR *opendir(const char *path)
{
    xpath p;
    int r = prep_dir(AT_FDCWD, path, &p);
    if (r < 0) return NULL;
    return RCALL(opendir, NULL, xp_real(r, &p, path));
}

XUFS_API DIR *fdopendir(int fd)
{
    xpath p;
    if (xufs_on() && xufs_classify_fd(fd, &p) && xufs_list(p.rel) < 0 && errno != ENOTDIR)
        return NULL;
    return RCALL(fdopendir, NULL, fd);
}

typedef int (*sel_fn)(const struct dirent *);
typedef int (*cmp_fn)(const struct dirent **, const struct dirent **);
typedef int (*sel64_fn)(const struct dirent64 *);
typedef int (*cmp64_fn)(const struct dirent64 **, const struct dirent64 **);

XUFS_API int scandir(const char *path, struct dirent ***list, sel_fn sel, cmp_fn cmp)
{
    xpath p;
    int r = prep_dir(AT_FDCWD, path, &p);
    if (r < 0) return -1;
    return RCALL(scandir, -1, xp_real(r, &p, path), list, sel, cmp);
}

XUFS_API int scandir64(const char *path, struct dirent64 ***list, sel64_fn sel, cmp64_fn cmp)
{
    xpath p;
    int r = prep_dir(AT_FDCWD, path, &p);
    if (r < 0) return -1;
    return RCALL(scandir64, -1, xp_real(r, &p, path), list, sel, cmp);
}

XUFS_API int scandirat(int dirfd, const char *path, struct dirent ***list, sel_fn sel, cmp_fn cmp)
{
    xpath p;
    int r = prep_dir(dirfd, path, &p);
    if (r < 0) return -1;
    return RCALL(scandirat, -1, dirfd, xp_real(r, &p, path), list, sel, cmp);
}

XUFS_API int scandirat64(int dirfd, const char *path, struct dirent64 ***list, sel64_fn sel,
                         cmp64_fn cmp)
{
    xpath p;
    int r = prep_dir(dirfd, path, &p);
    if (r < 0) return -1;
    return RCALL(scandirat64, -1, dirfd, xp_real(r, &p, path), list, sel, cmp);
}

/* ---- nftw / ftw ---- */

/* TREE for a walk root; returns the path to hand to the real walker (in p->buf, or path). */
static int prep_tree(const char *path, xpath *p, const char **use)
{
    *use = path;
    int r = xufs_on() ? xp_lookup(AT_FDCWD, path, 1, p) : 0;
    if (r <= 0) return r;
    if (xufs_tree(p->rel) < 0 && errno != ENOTDIR) return -1;
    if (!p->direct) *use = p->buf;
    return 1;
}

struct walk {
    void *fn;
    int translate;
    struct walk *prev;
};
static __thread struct walk *cur_walk;

/* Mount path of fpath in buf (or fpath itself); *base: FTW base fixed for it (in/out). */
static const char *walk_path(const char *fpath, char *buf, int *base)
{
    if (!cur_walk->translate) return fpath;
    size_t n = strlen(fpath);
    if (n >= PATH_MAX) return fpath;
    memcpy(buf, fpath, n + 1);
    if (xufs_to_mount(buf, PATH_MAX) != 1) return fpath;
    size_t m = strlen(buf);
    if ((size_t)*base <= n && strcmp(fpath + *base, buf + m - (n - (size_t)*base)) == 0 &&
        m - (n - (size_t)*base) > 0 && buf[m - (n - (size_t)*base) - 1] == '/')
        *base = (int)(m - (n - (size_t)*base)); /* same last component: shift */
    else {
        const char *s = strrchr(buf, '/'); /* the root: its name differs in the mount */
        *base = s ? (int)(s - buf + 1) : 0;
    }
    return buf;
}

static int nftw_tramp(const char *fpath, const struct stat *sb, int flag, struct FTW *f)
{
    char buf[PATH_MAX];
    struct walk *w = cur_walk;
    int base = f->base;
    const char *path = walk_path(fpath, buf, &base);
    struct FTW f2 = { base, f->level };
    cur_walk = w->prev; /* a walk started by the callback nests cleanly */
    int r = ((__nftw_func_t)w->fn)(path, sb, flag, &f2);
    cur_walk = w;
    return r;
}

static int nftw64_tramp(const char *fpath, const struct stat64 *sb, int flag, struct FTW *f)
{
    char buf[PATH_MAX];
    struct walk *w = cur_walk;
    int base = f->base;
    const char *path = walk_path(fpath, buf, &base);
    struct FTW f2 = { base, f->level };
    cur_walk = w->prev;
    int r = ((__nftw64_func_t)w->fn)(path, sb, flag, &f2);
    cur_walk = w;
    return r;
}

static int ftw_tramp(const char *fpath, const struct stat *sb, int flag)
{
    char buf[PATH_MAX];
    int base = 0;
    struct walk *w = cur_walk;
    const char *path = walk_path(fpath, buf, &base);
    cur_walk = w->prev;
    int r = ((__ftw_func_t)w->fn)(path, sb, flag);
    cur_walk = w;
    return r;
}

static int ftw64_tramp(const char *fpath, const struct stat64 *sb, int flag)
{
    char buf[PATH_MAX];
    int base = 0;
    struct walk *w = cur_walk;
    const char *path = walk_path(fpath, buf, &base);
    cur_walk = w->prev;
    int r = ((__ftw64_func_t)w->fn)(path, sb, flag);
    cur_walk = w;
    return r;
}

#define WALK(real_call_plain, real_call_tramp)                                  \
    xpath p;                                                                    \
    const char *use;                                                            \
    int r = prep_tree(dir, &p, &use);                                           \
    if (r < 0) return -1;                                                       \
    if (!r) return real_call_plain;                                             \
    struct walk w = { (void *)fn, !p.direct, cur_walk };                        \
    cur_walk = &w;                                                              \
    int rc = real_call_tramp;                                                   \
    cur_walk = w.prev;                                                          \
    return rc;

XUFS_API int nftw(const char *dir, __nftw_func_t fn, int nfd, int flags)
{
    WALK(RCALL(nftw, -1, dir, fn, nfd, flags), RCALL(nftw, -1, use, nftw_tramp, nfd, flags));
}

XUFS_API int nftw64(const char *dir, __nftw64_func_t fn, int nfd, int flags)
{
    WALK(RCALL(nftw64, -1, dir, fn, nfd, flags), RCALL(nftw64, -1, use, nftw64_tramp, nfd, flags));
}

XUFS_API int ftw(const char *dir, __ftw_func_t fn, int nfd)
{
    WALK(RCALL(ftw, -1, dir, fn, nfd), RCALL(ftw, -1, use, ftw_tramp, nfd));
}

XUFS_API int ftw64(const char *dir, __ftw64_func_t fn, int nfd)
{
    WALK(RCALL(ftw64, -1, dir, fn, nfd), RCALL(ftw64, -1, use, ftw64_tramp, nfd));
}

/* ---- glibc fts ---- */

/* Streams opened on cache paths; the entry returned last has its fts_path swapped for a mount
 * path until the next call on the stream. */
#define MAXFTS 32
static struct ftsrec {
    void *fts;
    void *ent;          /* FTSENT or FTSENT64 whose fts_path is swapped */
    char *orig;
    int is64;
    unsigned short origlen;
    char buf[PATH_MAX];
} ftsrecs[MAXFTS];
static pthread_mutex_t fts_lock = PTHREAD_MUTEX_INITIALIZER;

static struct ftsrec *fts_rec(void *fts)
{
    for (int i = 0; i < MAXFTS; i++)
        if (ftsrecs[i].fts == fts && fts) return &ftsrecs[i];
    return NULL;
}

#define RESTORE(T, r) do {                                                      \
        T *e_ = (r)->ent;                                                       \
        if (e_) { e_->fts_path = (r)->orig; e_->fts_pathlen = (r)->origlen; }  \
        (r)->ent = NULL;                                                        \
    } while (0)

#define SWAP(T, r, e) do {                                                      \
        T *e_ = (e);                                                            \
        size_t n_ = e_->fts_path ? strlen(e_->fts_path) : PATH_MAX;             \
        if (n_ < PATH_MAX) {                                                    \
            memcpy((r)->buf, e_->fts_path, n_ + 1);                             \
            if (xufs_to_mount((r)->buf, PATH_MAX) == 1 &&                       \
                strlen((r)->buf) < 65535) {                                     \
                (r)->ent = e_;                                                  \
                (r)->orig = e_->fts_path;                                       \
                (r)->origlen = e_->fts_pathlen;                                 \
                e_->fts_path = (r)->buf;                                        \
                e_->fts_pathlen = (unsigned short)strlen((r)->buf);             \
            }                                                                   \
        }                                                                       \
    } while (0)

/* Translates argv for fts_open: TREE of each XUFS root. NULL (errno) on failure; *any set when
 * some root was replaced by its cache path. */
static char **fts_args(char *const *argv, int *any)
{
    size_t n = 0;
    *any = 0;
    while (argv[n]) n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        xpath *p = malloc(sizeof *p);
        const char *use;
        int r = p ? prep_tree(argv[i], p, &use) : -1;
        if (r < 0) {
            int e = p ? errno : ENOMEM;
            free(p);
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            errno = e;
            return NULL;
        }
        if (use != argv[i]) *any = 1;
        out[i] = strdup(use);
        free(p);
        if (!out[i]) {
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            errno = ENOMEM;
            return NULL;
        }
    }
    return out;
}

static void free_args(char **a)
{
    for (size_t i = 0; a[i]; i++) free(a[i]);
    free(a);
}

static void fts_register(void *fts, int is64)
{
    pthread_mutex_lock(&fts_lock);
    struct ftsrec *r = fts_rec(NULL);
    for (int i = 0; i < MAXFTS && !r; i++)
        if (!ftsrecs[i].fts) r = &ftsrecs[i];
    if (r) {
        r->fts = fts;
        r->ent = NULL;
        r->is64 = is64;
    }
    pthread_mutex_unlock(&fts_lock);
}

#define FTS_OPEN(FTS_T, openfn, is64)                                           \
    if (!xufs_on()) return RCALL(openfn, NULL, argv, options, cmp);             \
    int any;                                                                    \
    char **a = fts_args(argv, &any);                                            \
    if (!a) return NULL;                                                        \
    FTS_T *f = RCALL(openfn, NULL, a, options, cmp);                            \
    int e = errno;                                                              \
    free_args(a);                                                               \
    if (f && any) fts_register(f, is64);                                        \
    errno = e;                                                                  \
    return f;

#define FTS_STEP(ENT_T, call, out)                                              \
    pthread_mutex_lock(&fts_lock);                                              \
    struct ftsrec *r = fts_rec(sp);                                             \
    if (r) RESTORE(ENT_T, r);                                                   \
    pthread_mutex_unlock(&fts_lock);                                            \
    out = call;                                                                 \
    if (r && out) {                                                             \
        int e = errno;                                                          \
        pthread_mutex_lock(&fts_lock);                                          \
        if (r->fts == sp) SWAP(ENT_T, r, out);                                  \
        pthread_mutex_unlock(&fts_lock);                                        \
        errno = e;                                                              \
    }

#define FTS_CLOSE(ENT_T, closefn)                                               \
    pthread_mutex_lock(&fts_lock);                                              \
    struct ftsrec *r = fts_rec(sp);                                             \
    if (r) {                                                                    \
        RESTORE(ENT_T, r);                                                      \
        r->fts = NULL;                                                          \
    }                                                                           \
    pthread_mutex_unlock(&fts_lock);                                            \
    return RCALL(closefn, -1, sp);

typedef int (*fts_cmp)(const FTSENT **, const FTSENT **);
typedef int (*fts64_cmp)(const FTSENT64 **, const FTSENT64 **);

XUFS_API FTS *fts_open(char *const *argv, int options, fts_cmp cmp)
{
    FTS_OPEN(FTS, fts_open, 0)
}

XUFS_API FTSENT *fts_read(FTS *sp)
{
    FTSENT *out;
    FTS_STEP(FTSENT, RCALL(fts_read, NULL, sp), out)
    return out;
}

XUFS_API FTSENT *fts_children(FTS *sp, int options)
{
    FTSENT *out;
    pthread_mutex_lock(&fts_lock);
    struct ftsrec *r = fts_rec(sp);
    if (r) RESTORE(FTSENT, r);
    pthread_mutex_unlock(&fts_lock);
    out = RCALL(fts_children, NULL, sp, options);
    return out;
}

XUFS_API int fts_close(FTS *sp)
{
    FTS_CLOSE(FTSENT, fts_close)
}

XUFS_API FTS64 *fts64_open(char *const *argv, int options, fts64_cmp cmp)
{
    FTS_OPEN(FTS64, fts64_open, 1)
}

XUFS_API FTSENT64 *fts64_read(FTS64 *sp)
{
    FTSENT64 *out;
    FTS_STEP(FTSENT64, RCALL(fts64_read, NULL, sp), out)
    return out;
}

XUFS_API FTSENT64 *fts64_children(FTS64 *sp, int options)
{
    pthread_mutex_lock(&fts_lock);
    struct ftsrec *r = fts_rec(sp);
    if (r) RESTORE(FTSENT64, r);
    pthread_mutex_unlock(&fts_lock);
    return RCALL(fts64_children, NULL, sp, options);
}

XUFS_API int fts64_close(FTS64 *sp)
{
    FTS_CLOSE(FTSENT64, fts64_close)
}

/* ---- glob ---- */

/* LIST (wildcards only in the last component) or TREE (deeper) of the pattern's fixed prefix;
 * *use: pattern for the real glob. 1 when results must be translated back. */
static int prep_glob(const char *pattern, int flags, xpath *p, const char **use)
{
    *use = pattern;
    if (!xufs_on() || (flags & GLOB_ALTDIRFUNC) || !xufs_classify(AT_FDCWD, pattern, p)) return 0;
    const char *special = (flags & GLOB_BRACE) ? "*?[{" : "*?[";
    const char *w = strpbrk(p->rel, special);
    char dir[PATH_MAX];
    if (!w) {
        if (xufs_lookup(p->rel) < 0 && errno != ENOENT) return -1;
    } else {
        size_t n = (size_t)(w - p->rel);
        while (n > 0 && p->rel[n - 1] != '/') n--;
        if (n == 0) strcpy(dir, ".");
        else {
            memcpy(dir, p->rel, n - 1);
            dir[n - 1] = '\0';
        }
        int deep = strchr(w, '/') != NULL;
        if (xufs_lookup(dir) < 0 && errno != ENOENT) return -1;
        if ((deep ? xufs_tree(dir) : xufs_list(dir)) < 0 && errno != ENOENT && errno != ENOTDIR)
            return -1;
    }
    if (p->direct) return 0;
    *use = p->buf;
    return 1;
}

#define GLOB_TRANSLATE(g, before)                                               \
    for (size_t i = (g)->gl_offs + (before); i < (g)->gl_offs + (g)->gl_pathc; i++) { \
        char *s = (g)->gl_pathv[i];                                             \
        char tmp[PATH_MAX];                                                     \
        if (!s || strlen(s) >= sizeof tmp) continue;                            \
        strcpy(tmp, s);                                                         \
        if (xufs_to_mount(tmp, sizeof tmp) == 1) {                              \
            char *d = strdup(tmp);                                              \
            if (d) {                                                            \
                free(s);                                                        \
                (g)->gl_pathv[i] = d;                                           \
            }                                                                   \
        }                                                                       \
    }

typedef int (*glob_err)(const char *, int);

XUFS_API int glob(const char *pattern, int flags, glob_err err, glob_t *g)
{
    xpath p;
    const char *use;
    int t = prep_glob(pattern, flags, &p, &use);
    if (t < 0) return GLOB_ABORTED;
    size_t before = (flags & GLOB_APPEND) ? g->gl_pathc : 0;
    int r = RCALL(glob, GLOB_ABORTED, use, flags, err, g);
    if (t && (r == 0 || r == GLOB_NOMATCH)) GLOB_TRANSLATE(g, before);
    return r;
}

XUFS_API int glob64(const char *pattern, int flags, glob_err err, glob64_t *g)
{
    xpath p;
    const char *use;
    int t = prep_glob(pattern, flags, &p, &use);
    if (t < 0) return GLOB_ABORTED;
    size_t before = (flags & GLOB_APPEND) ? g->gl_pathc : 0;
    int r = RCALL(glob64, GLOB_ABORTED, use, flags, err, g);
    if (t && (r == 0 || r == GLOB_NOMATCH)) GLOB_TRANSLATE(g, before);
    return r;
}
