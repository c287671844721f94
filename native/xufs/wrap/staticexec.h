/* staticexec.h: static programs in an XUFS session (staticexec.c). libxufs.so cannot reach a
 * statically linked program, so its exec wrappers (exec.c) run one through the launcher
 * `uvpn_supervise --xufs` (beside libxufs.so), whose seccomp supervisor serves the program's
 * path system calls under the mount (supervisor/xufs.c). No allocation: usable in a vfork child
 * (the real functions are looked up through XREAL, as the wrappers around it already do). */
#ifndef XUFS_STATICEXEC_H
#define XUFS_STATICEXEC_H

/* 1 when exec'ing path (a real path: the cache path of a program under the mount) with envp
 * should go through the launcher: it exists, envp has no XUFS_SUPERVISED (set for everything the
 * launcher starts: the filter is inherited) nor XUFS_STATIC=off, and path is an executable static
 * ELF or a script whose #! interpreter is one. Costs an open, a 4 KiB read and a close. */
int xse_wanted(const char *path, char *const envp[]);

/* Is the launcher there (the wrappers then search PATH themselves, to see static programs)? */
int xse_available(void);

/* An exec-like call. */
typedef int (*xse_exec_fn)(const char *path, char *const argv[], char *const envp[], void *ctx);

/* Calls fn with the launcher, argv "uvpn_supervise --xufs --nested exec -- PATH ARGV..." and
 * envp plus XUFS_SUPERVISED=1. Returns what fn returns. */
int xse_launch(const char *path, char *const argv[], char *const envp[], xse_exec_fn fn, void *ctx);

#endif
