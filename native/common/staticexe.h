/* staticexe.h: what the preload libraries' exec wrappers need to run a static program under the
 * seccomp supervisor: is a file a static executable, the launcher uvpn_supervise beside the
 * library, and the launcher's argv. Used by libuvpn.so (uvpn/wrap/staticexec.c) and libxufs.so
 * (xufs/wrap/staticexec.c). File access goes through the real-libc table (common/real.h);
 * everything but sx_find_launcher uses the stack only (usable in a vfork child). */
#ifndef MYRT_STATICEXE_H
#define MYRT_STATICEXE_H

#include <stddef.h>

/* 1 when path is an ELF executable without PT_INTERP (static, also static-pie), or a script
 * whose #! interpreter is one. Costs an open, a read of 4 KiB and a close. */
int sx_is_static(const char *path);

/* Writes the path of uvpn_supervise in the directory of the library holding addr into out (cap
 * bytes) when it exists and is executable; else leaves out untouched. */
void sx_find_launcher(const void *addr, char *out, size_t cap);

/* The value of variable name in envp, or NULL. */
const char *sx_env(char *const envp[], const char *name);

/* Most arguments (and environment entries) the wrappers pass through the launcher. */
#define SX_MAX_ARGS 65536
/* Room sx_argv needs beyond argc: the launcher, its options (at most 4), "--", PATH, NULL. */
#define SX_ARGV_EXTRA 8

/* Fills out (argc + SX_ARGV_EXTRA entries) with "LAUNCHER OPTS... -- PATH ARGV..." (argv[0] is
 * path when argv is empty, as the kernel would give), NULL-terminated. */
void sx_argv(const char *launcher, const char *const *opts, const char *path, char *const argv[], size_t argc,
             char **out);

#endif
