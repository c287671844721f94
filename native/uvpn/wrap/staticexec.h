/* staticexec.h: how libuvpn.so's exec wrappers (fdlife.c) start a static program: through the
 * launcher uvpn_supervise (beside libuvpn.so), which runs it under the seccomp supervisor with
 * its own process id. Every function may run in a vfork child (stack only). */
#ifndef UVPN_STATICEXEC_H
#define UVPN_STATICEXEC_H

#include <stddef.h>

/* 1 when exec'ing path with envp should go through the launcher: the launcher exists, envp has
 * UVPN_SRC_ADDR and not UVPN_STATIC=off, and path is an executable static ELF (or a script
 * whose interpreter is one). Costs an open, a read of 4 KiB and a close per exec. */
int se_wanted(const char *path, char *const envp[]);

/* The file execvp would run for file (PATH search, as glibc's), into out. 1 found, else 0. */
int se_search(const char *file, char *out, size_t cap);

/* An exec-like call: fn(path, argv, envp, ctx). */
typedef int (*se_exec_fn)(const char *path, char *const argv[], char *const envp[], void *ctx);

/* Calls fn with the launcher as path, argv "uvpn_supervise --nested exec -- PATH ARGV...", and
 * envp without libuvpn.so in LD_PRELOAD. Returns what fn returns. */
int se_launch(const char *path, char *const argv[], char *const envp[], se_exec_fn fn, void *ctx);

#endif
