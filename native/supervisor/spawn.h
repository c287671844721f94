/* spawn.h: starting a supervised program. The child sets its signal state (sp_signals), asks to be
 * killed when the supervising thread dies, installs the seccomp filter (filter.h), passes the
 * listener fd to the supervisor over a socketpair (SCM_RIGHTS), waits for the supervisor's
 * go-ahead, and execs. */
#ifndef MYRT_SPAWN_H
#define MYRT_SPAWN_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

/* The signal state the program starts with: the dispositions to leave ignored (as exec keeps
 * them: nohup's SIGHUP) and the mask; everything else is reset to the default. */
typedef struct {
    sigset_t ignored, mask;
} sp_signals;

/* Starts path with argv/envp under the filter. Returns the child's pid with *notify_fd set, or
 * -1 with a sentence in err. *exit_code is the exit status to use on failure (126 cannot
 * supervise or execute, 127 not found). Before letting the child exec, checks that this process
 * may take the child's fds (pidfd_getfd), so a Yama or kernel refusal is reported up front. */
pid_t sp_spawn(const char *path, char *const argv[], char *const envp[], const sp_signals *sig,
               int *notify_fd, int *exit_code, char *err, size_t errlen);

#endif
