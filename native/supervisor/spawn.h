/* spawn.h: starting a supervised program. The child resets its signal state, asks to be
 * killed when the supervising thread dies, installs the seccomp filter (filter.h), passes the
 * listener fd to the supervisor over a socketpair (SCM_RIGHTS), waits for the supervisor's
 * go-ahead, and execs. */
#ifndef MYRT_SPAWN_H
#define MYRT_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Starts path with argv/envp under the filter. Returns the child's pid with *notify_fd set, or
 * -1 with a sentence in err. *exit_code is the exit status to use on failure (126 cannot
 * supervise or execute, 127 not found). Before letting the child exec, checks that this process
 * may take the child's fds (pidfd_getfd), so a Yama or kernel refusal is reported up front. */
pid_t sp_spawn(const char *path, char *const argv[], char *const envp[], int *notify_fd,
               int *exit_code, char *err, size_t errlen);

#endif
