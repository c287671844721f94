/* staticexec.c: the exec wrappers' way to static programs (see staticexec.h). The launcher's
 * path is found once, at load; everything else uses the stack only. */
#include "xufs/wrap/staticexec.h"
#include "common/staticexe.h"
#include "xufs/core/xreal.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char launcher[PATH_MAX]; /* uvpn_supervise beside libxufs.so, "" when absent */

__attribute__((constructor)) static void find_launcher(void)
{
    sx_find_launcher((void *)find_launcher, launcher, sizeof launcher);
}

int xse_available(void)
{
    return launcher[0] != 0;
}

int xse_wanted(const char *path, char *const envp[])
{
    if (!launcher[0] || !path || sx_env(envp, "XUFS_SUPERVISED")) return 0;
    const char *mode = sx_env(envp, "XUFS_STATIC");
    if (mode && strcmp(mode, "off") == 0) return 0;
    struct stat st;
    if (RCALL(stat, -1, path, &st) || !S_ISREG(st.st_mode) || RCALL(access, -1, path, X_OK)) return 0;
    return sx_is_static(path);
}

int xse_launch(const char *path, char *const argv[], char *const envp[], xse_exec_fn fn, void *ctx)
{
    size_t argc = 0, envc = 0;
    while (argv && argv[argc] && argc <= SX_MAX_ARGS) argc++;
    while (envp && envp[envc] && envc <= SX_MAX_ARGS) envc++;
    if (argc > SX_MAX_ARGS || envc > SX_MAX_ARGS) return fn(path, argv, envp, ctx);
    char *nargv[argc + SX_ARGV_EXTRA], *nenv[envc + 2];
    static const char *const opts[] = {"--xufs", "--nested", "exec", NULL};
    sx_argv(launcher, opts, path, argv, argc, nargv);
    for (size_t i = 0; i < envc; i++) nenv[i] = envp[i];
    nenv[envc] = (char *)"XUFS_SUPERVISED=1";
    nenv[envc + 1] = NULL;
    return fn(launcher, nargv, nenv, ctx);
}
