/* exec.c: libxufs.so's exec wrappers. A program under the mount is fetched (FETCH)
 * and its cache path executed; argv and the environment pass through unchanged (children keep
 * LD_PRELOAD and XUFS_*). glibc's execv/execvp/execl* and posix_spawn* call execve internally,
 * bypassing the PLT, so each is wrapped; a PATH search is done here only when PATH has a
 * directory under the mount. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* 1: *use is the cache path of an XUFS program (fetched); 0: not XUFS; -1 errno. */
static int prep_exec(const char *path, xpath *p)
{
    int track;
    int r = xp_open(AT_FDCWD, path, O_RDONLY, p, &track);
    if (r <= 0) return r;
    return 1;
}

XUFS_API int execve(const char *path, char *const argv[], char *const envp[])
{
    xpath p;
    int r = prep_exec(path, &p);
    if (r < 0) return -1;
    return RCALL(execve, -1, xp_real(r, &p, path), argv, envp);
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
    if (!path_has_xufs(pathenv)) return RCALL(execvpe, -1, file, argv, envp);
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
    return RCALL(posix_spawn, ENOSYS, pid, xp_real(r, &p, path), fa, attr, argv, envp);
}

XUFS_API int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    if (!xufs_on() || !*file) return RCALL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, envp);
    if (strchr(file, '/')) return posix_spawn(pid, file, fa, attr, argv, envp);
    const char *pathenv = getenv("PATH");
    if (!pathenv) pathenv = "/bin:/usr/bin";
    if (!path_has_xufs(pathenv)) return RCALL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, envp);
    struct exec_args x = { argv, envp, pid, fa, attr };
    return path_search(file, pathenv, try_spawn, &x) < 0 ? errno : 0;
}
