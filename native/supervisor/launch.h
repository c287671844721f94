/* launch.h: the supervisor's process structure (launch.c) and its notification loop
 * (supervisor.c), as the launcher uvpn_supervise runs them. */
#ifndef MYRT_LAUNCH_H
#define MYRT_LAUNCH_H

#include <sys/types.h>

/* The overlay code reads envp (the program's environment) from now on. */
void sv_init(char *const *envp);

/* The program pid ended with wait status status; remaining: processes it started still use
 * the filter. */
typedef void (*sv_exit_fn)(void *ctx, int status, int remaining);

/* Serves the stopped calls of every process under the filter (listener nfd) until none is
 * left; reaps pid (our child) and the orphans reparented to us (chld_fd: a signalfd for
 * SIGCHLD), calls on_exit once when pid ends, and kills pid when front_pidfd (the front
 * process, or -1) ends first. 0, or -errno. */
int sv_loop(int nfd, pid_t pid, int chld_fd, int front_pidfd, sv_exit_fn on_exit, void *ctx);

/* At the end: unregisters what is still registered, gives workers time, closes nfd. */
void sv_finish(int nfd);

#endif
