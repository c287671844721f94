/* path.c: configuration and path classification/translation of libxufs.so (see
 * path.h). Paths are made absolute (cwd from the real getcwd, a dirfd's path from
 * /proc/self/fd/N; a base inside the cache counts as the matching mount path, so ".." climbs
 * out of the mount the way the user sees it) and normalised lexically before the prefix test. */
#include "xufs/core/path.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXV 2 /* each root as given and as resolved by realpath */

static struct {
    int on;
    char mount[MAXV][PATH_MAX];
    size_t mlen[MAXV];
    int nm;
    char cache[MAXV][PATH_MAX];
    size_t clen[MAXV];
    int nc;
    char sock[108];
} cfg;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Lexical normalisation of an absolute path in place: removes ".", "..", "//", trailing "/". */
static void normalize(char *p)
{
    char *out = p + 1;      /* after the leading '/' */
    const char *in = p + 1;
    while (*in) {
        while (*in == '/') in++;
        if (!*in) break;
        const char *end = strchrnul(in, '/');
        size_t n = (size_t)(end - in);
        char c = *end; /* writing the '/' below may overwrite a final NUL */
        if (n == 1 && in[0] == '.') {
            /* skip */
        } else if (n == 2 && in[0] == '.' && in[1] == '.') {
            if (out > p + 1) {
                out--;                      /* the '/' after the last component (or end) */
                while (out > p + 1 && out[-1] != '/') out--;
            }
        } else {
            if (out != in) memmove(out, in, n);
            out += n;
            *out++ = '/';
        }
        if (!c) break;
        in = end;
    }
    if (out > p + 1) out--; /* drop the trailing '/' */
    *out = '\0';
}

static int add_root(char (*arr)[PATH_MAX], size_t *lens, int *n, const char *v)
{
    if (!v || v[0] != '/' || strlen(v) >= PATH_MAX) return -1;
    char tmp[PATH_MAX];
    strcpy(tmp, v);
    normalize(tmp);
    if (strcmp(tmp, "/") == 0) return -1;
    for (int i = 0; i < *n; i++)
        if (strcmp(arr[i], tmp) == 0) return 0;
    strcpy(arr[*n], tmp);
    lens[*n] = strlen(tmp);
    (*n)++;
    return 0;
}

static void load(void)
{
    const char *m = getenv("XUFS_MOUNT"), *c = getenv("XUFS_CACHE"), *s = getenv("XUFS_SOCK");
    if (!m || !c || !s || !*m || !*c || !*s || strlen(s) >= sizeof cfg.sock) return;
    if (add_root(cfg.mount, cfg.mlen, &cfg.nm, m) < 0) return;
    if (add_root(cfg.cache, cfg.clen, &cfg.nc, c) < 0) return;
    char r[PATH_MAX];
    char *(*rp)(const char *, char *) = XREAL(realpath);
    if (rp && rp(cfg.mount[0], r)) add_root(cfg.mount, cfg.mlen, &cfg.nm, r);
    if (rp && rp(cfg.cache[0], r)) add_root(cfg.cache, cfg.clen, &cfg.nc, r);
    strcpy(cfg.sock, s);
    __atomic_store_n(&cfg.on, 1, __ATOMIC_RELEASE);
    dbg("active: mount %s cache %s sock %s", cfg.mount[0], cfg.cache[0], cfg.sock);
}

int xufs_on(void)
{
    if (__builtin_expect(!__atomic_load_n(&cfg.on, __ATOMIC_ACQUIRE), 0)) {
        int e = errno;
        pthread_once(&once, load);
        errno = e;
    }
    return cfg.on;
}

const char *xufs_mount_root(size_t *len)
{
    *len = xufs_on() ? cfg.mlen[0] : 0;
    return *len ? cfg.mount[0] : "";
}

const char *xufs_cache_root(void) { return xufs_on() ? cfg.cache[0] : ""; }

const char *xufs_cache_resolved(size_t *len)
{
    if (!xufs_on()) {
        *len = 0;
        return "";
    }
    *len = cfg.clen[cfg.nc - 1];
    return cfg.cache[cfg.nc - 1];
}

const char *xufs_sock(void) { return xufs_on() ? cfg.sock : ""; }

/* Length of the root among roots[] that prefixes p at a component boundary, and its index. */
static int match(const char *p, char (*roots)[PATH_MAX], const size_t *lens, int n, size_t *len)
{
    for (int i = 0; i < n; i++)
        if (strncmp(p, roots[i], lens[i]) == 0 && (p[lens[i]] == '\0' || p[lens[i]] == '/')) {
            *len = lens[i];
            return i;
        }
    return -1;
}

/* Replaces the first plen bytes of buf by repl (rlen); 0, or -1 if it would not fit. */
static int replace_prefix(char *buf, size_t size, size_t plen, const char *repl, size_t rlen)
{
    size_t rest = strlen(buf + plen);
    if (rlen + rest + 1 > size) return -1;
    memmove(buf + rlen, buf + plen, rest + 1);
    memcpy(buf, repl, rlen);
    return 0;
}

int xufs_to_mount(char *buf, size_t size)
{
    size_t len;
    if (!xufs_on() || buf[0] != '/') return 0;
    if (match(buf, cfg.cache, cfg.clen, cfg.nc, &len) < 0) return 0;
    if (replace_prefix(buf, size, len, cfg.mount[0], cfg.mlen[0]) < 0) {
        errno = ERANGE;
        return -1;
    }
    return 1;
}

/* Could this already-absolute path need normalising? */
static int needs_norm(const char *p)
{
    for (const char *s = p; (s = strchr(s, '/')); s++) {
        if (s[1] == '/') return 1;
        if (s[1] == '.' && (s[2] == '/' || s[2] == '\0' ||
                            (s[2] == '.' && (s[3] == '/' || s[3] == '\0'))))
            return 1;
    }
    return 0;
}

/* Fills out from the normalised absolute path in out->buf. */
static int finish(xpath *out, int base_in_cache)
{
    size_t len;
    char *b = out->buf;
    int in_mount = match(b, cfg.mount, cfg.mlen, cfg.nm, &len) >= 0;
    if (!in_mount && match(b, cfg.cache, cfg.clen, cfg.nc, &len) < 0) {
        out->outside = base_in_cache;
        return 0;
    }
    out->direct = base_in_cache && in_mount;
    if (replace_prefix(b, sizeof out->buf, len, cfg.cache[0], cfg.clen[0]) < 0) return 0; /* too long */
    out->rel = b[cfg.clen[0]] ? b + cfg.clen[0] + 1 : ".";
    return 1;
}

/* lstat of the cache path in buf; a name missing from a directory this process has not seen
 * listed gets one LIST first (the manager materializes it). */
static int lstat_listed(const xpath *p, struct stat *st)
{
    if (RCALL(lstat, -1, p->buf, st) == 0) return 0;
    if (errno != ENOENT) return -1;
    char parent[PATH_MAX];
    xufs_rel_dirname(p->rel, parent);
    if (xufs_is_listed(parent) || xufs_list(parent) < 0) {
        errno = ENOENT;
        return -1;
    }
    return RCALL(lstat, -1, p->buf, st);
}

/* Follows the symlinks among the directories of the XUFS path in out (never its last
 * component) as the user sees them: a relative target from the mount path of the symlink's
 * directory, an absolute one as it is. So a symlink that climbs out of the mount leads outside
 * it, where the user's own files are — never into the cache manager's files beside the cache
 * tree, where the kernel would take it from the cache path. Returns 1 (still an XUFS path) or 0
 * (it leads outside: out->buf holds the absolute path, out->outside is set). */
int xufs_resolve_dirs(xpath *out)
{
    for (int hops = 0; hops < 40; hops++) {
        char *slash = strcmp(out->rel, ".") == 0 ? NULL : strchr(out->rel, '/');
        for (; slash; slash = strchr(slash + 1, '/')) {
            struct stat st;
            *slash = '\0';
            int ok = lstat_listed(out, &st);
            if (ok < 0 || !S_ISLNK(st.st_mode)) {
                *slash = '/';
                if (ok < 0 || !S_ISDIR(st.st_mode)) return 1; /* missing, or not a directory: the call says so */
                continue;
            }
            char t[PATH_MAX], np[PATH_MAX];
            ssize_t n = RCALL(readlink, -1, out->buf, t, sizeof t - 1);
            if (n <= 0) {
                *slash = '/';
                return 1;
            }
            t[n] = '\0';
            int len;
            if (t[0] == '/') {
                len = snprintf(np, sizeof np, "%s/%s", t, slash + 1);
            } else {
                char dir[PATH_MAX];
                xufs_rel_dirname(out->rel, dir);
                len = strcmp(dir, ".") == 0 ? snprintf(np, sizeof np, "%s/%s/%s", cfg.mount[0], t, slash + 1)
                                            : snprintf(np, sizeof np, "%s/%s/%s/%s", cfg.mount[0], dir, t, slash + 1);
            }
            *slash = '/';
            if (len < 0 || (size_t)len >= sizeof np) return 1;
            memcpy(out->buf, np, (size_t)len + 1);
            normalize(out->buf);
            out->direct = 0;
            if (!finish(out, 0)) {
                out->outside = 1;
                return 0;
            }
            break; /* a new XUFS path: walk it from the top */
        }
        if (!slash) return 1;
    }
    return 1;
}

int xufs_classify(int dirfd, const char *path, xpath *out)
{
    return xufs_classify_lexical(dirfd, path, out) ? xufs_resolve_dirs(out) : 0;
}

int xufs_classify_lexical(int dirfd, const char *path, xpath *out)
{
    out->outside = 0;
    if (!xufs_on() || !path || !*path) return 0;
    char *b = out->buf;
    int base_in_cache = 0;
    size_t plen = strlen(path);
    if (path[0] == '/') {
        if (plen >= sizeof out->buf) return 0;
        if (!needs_norm(path)) {
            size_t len;
            if (match(path, cfg.mount, cfg.mlen, cfg.nm, &len) < 0 &&
                match(path, cfg.cache, cfg.clen, cfg.nc, &len) < 0)
                return 0; /* fast path */
        }
        memmove(b, path, plen + 1); /* path may be b itself */
    } else {
        ssize_t n;
        if (dirfd == AT_FDCWD) {
            char *(*gc)(char *, size_t) = XREAL(getcwd);
            if (!gc || !gc(b, sizeof out->buf)) return 0;
            n = (ssize_t)strlen(b);
        } else {
            char lnk[40];
            snprintf(lnk, sizeof lnk, "/proc/self/fd/%d", dirfd);
            ssize_t (*rl)(const char *, char *, size_t) = XREAL(readlink);
            if (!rl) return 0;
            n = rl(lnk, b, sizeof out->buf - 1);
            if (n <= 0 || b[0] != '/') return 0;
            b[n] = '\0';
        }
        size_t len;
        if (match(b, cfg.cache, cfg.clen, cfg.nc, &len) >= 0) {
            base_in_cache = 1;
            if (replace_prefix(b, sizeof out->buf, len, cfg.mount[0], cfg.mlen[0]) < 0) return 0;
            n = (ssize_t)strlen(b);
        }
        if ((size_t)n + 1 + plen + 1 > sizeof out->buf) return 0;
        b[n] = '/';
        memcpy(b + n + 1, path, plen + 1);
    }
    normalize(b);
    return finish(out, base_in_cache);
}

int xufs_classify_fd(int fd, xpath *out)
{
    out->outside = 0;
    if (!xufs_on() || fd < 0) return 0;
    char lnk[40];
    snprintf(lnk, sizeof lnk, "/proc/self/fd/%d", fd);
    ssize_t (*rl)(const char *, char *, size_t) = XREAL(readlink);
    if (!rl) return 0;
    ssize_t n = rl(lnk, out->buf, sizeof out->buf - 1);
    if (n <= 0 || out->buf[0] != '/') return 0;
    out->buf[n] = '\0';
    normalize(out->buf);
    return finish(out, 0);
}

void xufs_rel_dirname(const char *rel, char *out)
{
    const char *s = strrchr(rel, '/');
    if (!s) {
        strcpy(out, ".");
        return;
    }
    memcpy(out, rel, (size_t)(s - rel));
    out[s - rel] = '\0';
}
