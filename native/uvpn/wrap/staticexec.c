/* staticexec.c: static programs started by an overlay program join the overlay too (see
 * staticexec.h). LD_PRELOAD cannot reach a statically linked program, so when a program under
 * libuvpn.so execs one (timeout, env, nohup, sh -c, srun's step daemon, mpiexec's proxies), the
 * exec wrappers (fdlife.c) run it through the launcher `uvpn_supervise` instead, which puts it
 * under the seccomp supervisor and keeps its process id (docs/UVPN.md, "Static programs started
 * by overlay programs").
 *
 * Everything here may run in the child of a vfork: stack only, no locks, no writes to globals
 * (the launcher's path is found once, at load). */
#include "uvpn/wrap/staticexec.h"
#include "common/real.h"
#include "common/staticexe.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PRELOAD_TEXT 4096

static char launcher[PATH_MAX]; /* uvpn_supervise beside libuvpn.so, "" when absent */

/* At load: the launcher beside this library. */
__attribute__((constructor)) static void find_launcher(void)
{
    sx_find_launcher((void *)find_launcher, launcher, sizeof launcher);
}

int se_wanted(const char *path, char *const envp[])
{
    if (!launcher[0] || !path) return 0;
    const char *src = sx_env(envp, "UVPN_SRC_ADDR"), *mode = sx_env(envp, "UVPN_STATIC");
    if (!src || !*src || (mode && strcmp(mode, "off") == 0)) return 0;
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode) || access(path, X_OK)) return 0;
    return sx_is_static(path);
}

int se_search(const char *file, char *out, size_t cap)
{
    if (!file || !*file) return 0;
    if (strchr(file, '/')) {
        if (strlen(file) >= cap) return 0;
        memcpy(out, file, strlen(file) + 1);
        return 1;
    }
    const char *p = getenv("PATH");
    if (!p) p = "/bin:/usr/bin";
    for (;;) {
        const char *e = strchr(p, ':');
        size_t dl = e ? (size_t)(e - p) : strlen(p);
        int n = snprintf(out, cap, "%.*s%s%s", (int)dl, p, dl ? "/" : "", file);
        struct stat st;
        if (n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 1;
        if (!e) return 0;
        p = e + 1;
    }
}

/* LD_PRELOAD without libuvpn.so (the launcher and the supervised program need none of it: the
 * supervisor serves them and their children). */
static const char *strip_preload(const char *v, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    while (*v) {
        size_t n = strcspn(v, ": ");
        const char *base = v;
        for (size_t i = 0; i < n; i++)
            if (v[i] == '/') base = v + i + 1;
        size_t bl = n - (size_t)(base - v);
        int ours = bl == strlen("libuvpn.so") && memcmp(base, "libuvpn.so", bl) == 0;
        if (n && !ours && len + n + 2 < cap) {
            if (len) buf[len++] = ':';
            memcpy(buf + len, v, n);
            len += n;
            buf[len] = 0;
        }
        v += n;
        while (*v == ':' || *v == ' ') v++;
    }
    return buf;
}

/* Calls fn with the launcher's argv and environment for path/argv/envp (stack only). */
int se_launch(const char *path, char *const argv[], char *const envp[], se_exec_fn fn, void *ctx)
{
    size_t argc = 0, envc = 0;
    while (argv && argv[argc] && argc <= SX_MAX_ARGS) argc++;
    while (envp && envp[envc] && envc <= SX_MAX_ARGS) envc++;
    if (argc > SX_MAX_ARGS || envc > SX_MAX_ARGS) return fn(path, argv, envp, ctx);
    char *nargv[argc + SX_ARGV_EXTRA], *nenv[envc + 1], pre[PRELOAD_TEXT + 16];
    static const char *const opts[] = {"--nested", "exec", NULL};
    sx_argv(launcher, opts, path, argv, argc, nargv);
    size_t m = 0;
    for (size_t i = 0; i < envc; i++) {
        if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0) {
            memcpy(pre, "LD_PRELOAD=", 11);
            strip_preload(envp[i] + 11, pre + 11, PRELOAD_TEXT);
            if (pre[11]) nenv[m++] = pre;
            continue;
        }
        nenv[m++] = envp[i];
    }
    nenv[m] = NULL;
    return fn(launcher, nargv, nenv, ctx);
}
