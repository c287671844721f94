/* exec.c: libxufs.so's exec wrappers. A program under the mount is fetched (FETCH)
 * and its cache path executed; argv and the environment pass through (children keep LD_PRELOAD,
 * LD_AUDIT and XUFS_*), but for LD_LIBRARY_PATH entries under the mount, which become their cache
 * directories (loader_env). glibc's execv/execvp/execl* and posix_spawn* call execve internally,
 * bypassing the PLT, so each is wrapped; a PATH search is done here only when PATH has a
 * directory under the mount. execveat is wrapped too. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"
#include "xufs/wrap/staticexec.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* 1: *use is the cache path of an XUFS program (fetched); 0: not XUFS; -1 errno. */
static int prep_exec_at(int dirfd, const char *path, int nofollow, xpath *p)
{
    int track;
    int r = xp_open(dirfd, path, O_RDONLY | (nofollow ? O_NOFOLLOW : 0), p, &track);
    if (r <= 0) return r;
    return 1;
}

static int prep_exec(const char *path, xpath *p)
{
    return prep_exec_at(AT_FDCWD, path, 0, p);
}

/* The dynamic loader stats each LD_LIBRARY_PATH directory and gives up on one that does not
 * exist, as every directory under the (empty) mount point looks to it: the program gets
 * LD_LIBRARY_PATH with the entries under the mount replaced by their cache directories (looked
 * up first, so that they exist in the cache), where libxufs_audit.so fetches what it loads.
 * Returns envp itself when nothing changes, else a malloc'd copy whose new entry is *owned
 * (free both with free_env). */
static char **loader_env(char *const envp[], char **owned)
{
    static const char VAR[] = "LD_LIBRARY_PATH=";
    if (!xufs_on() || !envp) return (char **)envp;
    size_t n = 0, at = (size_t)-1;
    for (; envp[n]; n++)
        if (strncmp(envp[n], VAR, sizeof VAR - 1) == 0) at = n;
    if (at == (size_t)-1) return (char **)envp;
    const char *list = envp[at] + sizeof VAR - 1;
    size_t cap = sizeof VAR + strlen(list) + 1, len = 0;
    char *out = malloc(cap);
    xpath *p = malloc(sizeof *p);
    int changed = 0;
    if (!out || !p) goto keep;
    memcpy(out, VAR, sizeof VAR);
    len = sizeof VAR - 1;
    for (const char *s = list;;) {
        const char *e = strchrnul(s, ':');
        char dir[PATH_MAX];
        size_t dl = (size_t)(e - s);
        const char *use = s;
        if (dl > 0 && dl < sizeof dir && *s == '/') {
            memcpy(dir, s, dl);
            dir[dl] = '\0';
            if (xp_lookup(AT_FDCWD, dir, 1, p) == 1) {
                use = p->buf;
                dl = strlen(p->buf);
                changed = 1;
            }
        }
        if (len + dl + 2 > cap) {
            char *bigger = realloc(out, cap = (len + dl + 2) * 2);
            if (!bigger) goto keep;
            out = bigger;
        }
        memcpy(out + len, use, dl);
        len += dl;
        out[len] = '\0';
        if (!*e) break;
        out[len++] = ':';
        out[len] = '\0';
        s = e + 1;
    }
    free(p);
    if (!changed) {
        free(out);
        return (char **)envp;
    }
    char **copy = malloc((n + 1) * sizeof *copy);
    if (!copy) {
        free(out);
        return (char **)envp;
    }
    for (size_t i = 0; i <= n; i++) copy[i] = envp[i];
    copy[at] = *owned = out;
    return copy;
keep:
    free(out);
    free(p);
    return (char **)envp;
}

/* Frees what loader_env allocated (nothing when it returned envp itself). */
static void free_env(char **env, char *const envp[], char *owned)
{
    if (env == (char **)envp) return;
    free(owned);
    free(env);
}

static int real_execve(const char *path, char *const argv[], char *const envp[], void *ctx)
{
    (void)ctx;
    return RCALL(execve, -1, path, argv, envp);
}

struct spawn_args {
    pid_t *pid;
    const posix_spawn_file_actions_t *fa;
    const posix_spawnattr_t *attr;
};

static int real_spawn(const char *path, char *const argv[], char *const envp[], void *ctx)
{
    struct spawn_args *s = ctx;
    return RCALL(posix_spawn, ENOSYS, s->pid, path, s->fa, s->attr, argv, envp);
}

/* The exec both wrappers end in: `real` (relative to dirfd, or "" with AT_EMPTY_PATH) with the
 * loader's environment (loader_env), freed again when the exec fails; errno is the exec's. A
 * plain execve of a static program runs it under the supervisor (xse_wanted). */
static int exec_real(int dirfd, const char *real, char *const argv[], char *const envp[], int flags)
{
    char *owned = NULL;
    char **env = loader_env(envp, &owned);
    int rc;
    if (dirfd != AT_FDCWD || flags) rc = RCALL(execveat, -1, dirfd, real, argv, env, flags);
    else if (xse_wanted(real, env)) rc = xse_launch(real, argv, env, real_execve, NULL);
    else rc = RCALL(execve, -1, real, argv, env);
    int e = errno;
    free_env(env, envp, owned);
    errno = e;
    return rc;
}

XUFS_API int execve(const char *path, char *const argv[], char *const envp[])
{
    xpath p;
    int r = prep_exec(path, &p);
    if (r < 0) return -1;
    return exec_real(AT_FDCWD, xp_real(r, &p, path), argv, envp, 0);
}

/* execveat: a path under the mount (relative to dirfd or absolute) runs its cache file; with
 * AT_EMPTY_PATH and "" the descriptor is already one (opened through open()). */
XUFS_API int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    xpath p;
    int r = (flags & AT_EMPTY_PATH) && !*path ? 0 : prep_exec_at(dirfd, path, (flags & AT_SYMLINK_NOFOLLOW) != 0, &p);
    if (r < 0) return -1;
    return exec_real(dirfd, r > 0 ? p.buf : path, argv, envp, flags);
}

XUFS_API int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

/* Does PATH name a directory under the mount? */
static int path_has_xufs(const char *pathenv)
{
    char dir[PATH_MAX];
    xpath *p = malloc(sizeof *p);
    int yes = 0;
    if (!p) return 0;
    for (const char *s = pathenv; s && !yes;) {
        const char *e = strchrnul(s, ':');
        size_t n = (size_t)(e - s);
        if (n == 0) n = 1, s = "."; /* empty entry: the cwd */
        if (n < sizeof dir) {
            memcpy(dir, s, n);
            dir[n] = '\0';
            yes = xufs_classify(AT_FDCWD, dir, p);
        }
        s = *e ? e + 1 : NULL;
    }
    free(p);
    return yes;
}

/* Tries dir/file for each PATH entry (empty: the cwd) until try_one returns >= 0; returns that,
 * or -1 with errno: EACCES if some candidate was refused so, else ENOENT. try_one returns -1 to
 * go on, -2 to stop with errno. */
static int path_search(const char *file, const char *pathenv, int (*try_one)(const char *, void *),
                       void *ctx)
{
    char cand[PATH_MAX];
    int saw_eacces = 0;
    size_t fl = strlen(file);
    for (const char *s = pathenv; s;) {
        const char *e = strchrnul(s, ':');
        size_t n = (size_t)(e - s);
        const char *dir = n ? s : ".";
        if (!n) n = 1;
        if (n + 1 + fl + 1 <= sizeof cand) {
            memcpy(cand, dir, n);
            cand[n] = '/';
            memcpy(cand + n + 1, file, fl + 1);
            int r = try_one(cand, ctx);
            if (r >= 0) return r;
            if (r == -2) return -1;
            if (errno == EACCES) saw_eacces = 1;
        }
        s = *e ? e + 1 : NULL;
    }
    errno = saw_eacces ? EACCES : ENOENT;
    return -1;
}

struct exec_args {
    char *const *argv, *const *envp;
    pid_t *pid;
    const posix_spawn_file_actions_t *fa;
    const posix_spawnattr_t *attr;
};

static int try_exec(const char *cand, void *ctx)
{
    struct exec_args *x = ctx;
    execve(cand, x->argv, x->envp);
    if (errno == EACCES || errno == ENOENT || errno == ENOTDIR || errno == ESTALE ||
        errno == ENODEV || errno == ETIMEDOUT)
        return -1;
    return -2;
}

static int try_spawn(const char *cand, void *ctx)
{
    struct exec_args *x = ctx;
    struct stat st;
    if (RCALL(stat, -1, cand, &st) < 0 || !S_ISREG(st.st_mode) || RCALL(access, -1, cand, X_OK) < 0) return -1;
    int r = posix_spawn(x->pid, cand, x->fa, x->attr, x->argv, x->envp);
    if (r) {
        errno = r;
        return -2;
    }
    return 0;
}

XUFS_API int execvpe(const char *file, char *const argv[], char *const envp[])
{
    if (!xufs_on() || !*file) return RCALL(execvpe, -1, file, argv, envp);
    if (strchr(file, '/')) return execve(file, argv, envp);
    const char *pathenv = getenv("PATH");
    if (!pathenv) pathenv = "/bin:/usr/bin";
    /* glibc's execvpe calls its internal execve: a static program on PATH is found here. */
    if (!path_has_xufs(pathenv) && !xse_available()) return RCALL(execvpe, -1, file, argv, envp);
    struct exec_args x = { argv, envp, NULL, NULL, NULL };
    return path_search(file, pathenv, try_exec, &x);
}

XUFS_API int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

/* Collects the variadic argument list of execl* (after arg0) into a NULL-terminated array. */
#define COLLECT_ARGS(arg0, ap, argv, envp_out)                                  \
    size_t n_ = 1;                                                              \
    va_start(ap, arg0);                                                         \
    while (va_arg(ap, char *)) n_++;                                            \
    va_end(ap);                                                                 \
    char *argv[n_ + 1];                                                         \
    argv[0] = (char *)arg0;                                                     \
    va_start(ap, arg0);                                                         \
    for (size_t i_ = 1; i_ <= n_; i_++) argv[i_] = va_arg(ap, char *);          \
    envp_out;                                                                   \
    va_end(ap);

XUFS_API int execl(const char *path, const char *arg0, ...)
{
    va_list ap;
    COLLECT_ARGS(arg0, ap, argv, (void)0)
    return execve(path, argv, environ);
}

XUFS_API int execlp(const char *file, const char *arg0, ...)
{
    va_list ap;
    COLLECT_ARGS(arg0, ap, argv, (void)0)
    return execvpe(file, argv, environ);
}

XUFS_API int execle(const char *path, const char *arg0, ...)
{
    va_list ap;
    char *const *envp;
    COLLECT_ARGS(arg0, ap, argv, envp = va_arg(ap, char *const *))
    return execve(path, argv, envp);
}

XUFS_API int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                         const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    xpath p;
    int r = prep_exec(path, &p);
    if (r < 0) return errno;
    char *owned = NULL;
    char **env = loader_env(envp, &owned);
    const char *real = xp_real(r, &p, path);
    struct spawn_args s = {pid, fa, attr};
    int rc = xse_wanted(real, env) ? xse_launch(real, argv, env, real_spawn, &s) : real_spawn(real, argv, env, &s);
    free_env(env, envp, owned);
    return rc;
}

XUFS_API int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    if (!xufs_on() || !*file) return RCALL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, envp);
    if (strchr(file, '/')) return posix_spawn(pid, file, fa, attr, argv, envp);
    const char *pathenv = getenv("PATH");
    if (!pathenv) pathenv = "/bin:/usr/bin";
    if (!path_has_xufs(pathenv) && !xse_available()) return RCALL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, envp);
    struct exec_args x = { argv, envp, pid, fa, attr };
    return path_search(file, pathenv, try_spawn, &x) < 0 ? errno : 0;
}
