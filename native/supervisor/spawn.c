/* spawn.c: fork, filter, hand over the listener, exec (see spawn.h). Between fork and exec the
 * child uses only async-signal-safe calls: the parent (Deno) is multi-threaded. The child
 * reports the listener's fd number with write() (the filter stops sendmsg, which only the
 * supervisor could answer) and the parent takes the fd with pidfd_getfd. */
#include "supervisor/spawn.h"
#include "supervisor/filter.h"
#include "supervisor/target.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the child reports over the socketpair: a stage and an errno. */
enum { ST_FILTER = 1, ST_EXEC = 2 };
struct report {
    int32_t stage, err, fd;
};

static void child(int sock, pid_t parent, const char *path, char *const argv[], char *const envp[],
                  const sp_signals *sig)
{
    struct report rep = {ST_FILTER, 0, -1};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    for (int s = 1; s < 65; s++) {
        dfl.sa_handler = sigismember(&sig->ignored, s) == 1 ? SIG_IGN : SIG_DFL;
        if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL); /* EINVAL for 32, 33: fine */
    }
    sigprocmask(SIG_SETMASK, &sig->mask, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);

    int fd = filter_install();
    if (fd < 0) rep.err = -fd;
    rep.fd = fd;
    if (write(sock, &rep, sizeof rep) != (ssize_t)sizeof rep || fd < 0) _exit(126);
    char go;
    if (read(sock, &go, 1) != 1) _exit(126); /* the supervisor gave up */
    /* close_range and execveat: calls no filter stops (the XUFS mode stops close, execve, and
     * execveat unless its dirfd carries FILTER_EXEC_MAGIC in the upper half the kernel ignores:
     * nobody would answer them before the supervisor's loop runs). */
    syscall(SYS_close_range, (unsigned)fd, (unsigned)fd, 0);
    syscall(SYS_execveat, (long)(((uint64_t)FILTER_EXEC_MAGIC << 32) | (uint32_t)AT_FDCWD), path, argv, envp, 0);
    rep.stage = ST_EXEC;
    rep.err = errno;
    ssize_t w = write(sock, &rep, sizeof rep);
    (void)w;
    _exit(rep.err == ENOENT ? 127 : 126);
}

static pid_t give_up(pid_t pid, int sock, int nfd)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(sock);
    if (nfd >= 0) close(nfd);
    return -1;
}

pid_t sp_spawn(const char *path, char *const argv[], char *const envp[], const sp_signals *sig,
               int *notify_fd, int *exit_code, char *err, size_t errlen)
{
    int sv[2];
    *exit_code = 126;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
        snprintf(err, errlen, "Cannot create a socketpair: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "Cannot fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        child(sv[1], parent, path, argv, envp, sig);
    }
    close(sv[1]);
    struct report rep = {0, 0, -1};
    ssize_t n;
    do n = read(sv[0], &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    int nfd = -1;
    if (n != (ssize_t)sizeof rep || rep.err || rep.fd < 0) {
        if (rep.err == EINVAL || rep.err == ENOSYS)
            snprintf(err, errlen, "Seccomp user notification is unavailable (needs Linux 5.0 or "
                                  "later with CONFIG_SECCOMP_FILTER): %s", strerror(rep.err));
        else if (rep.err == EBUSY)
            snprintf(err, errlen, "Already under a seccomp supervisor (the kernel allows one "
                                  "listener per process tree; run CMD with --mode preload): %s",
                     strerror(rep.err));
        else if (rep.err)
            snprintf(err, errlen, "The kernel refused the seccomp filter: %s", strerror(rep.err));
        else
            snprintf(err, errlen, "The supervised child did not hand over its seccomp listener");
        return give_up(pid, sv[0], nfd);
    }
    /* Take the listener. Yama ptrace_scope 2/3, or a kernel without pidfd_getfd, says no. */
    nfd = tg_getfd(pid, rep.fd);
    if (nfd < 0) {
        if (nfd == -ENOSYS)
            snprintf(err, errlen, "pidfd_getfd is unavailable (needs Linux 5.6): %s", strerror(-nfd));
        else
            snprintf(err, errlen, "Cannot take the program's sockets with pidfd_getfd (Yama "
                                  "ptrace_scope is 2 or 3? see /proc/sys/kernel/yama/ptrace_scope): %s",
                     strerror(-nfd));
        return give_up(pid, sv[0], -1);
    }
    char go = 1;
    if (write(sv[0], &go, 1) != 1) {
        snprintf(err, errlen, "The supervised child died before exec: %s", strerror(errno));
        return give_up(pid, sv[0], nfd);
    }
    /* EOF: exec succeeded (the socket was close-on-exec); a report: exec failed. */
    do n = read(sv[0], &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    close(sv[0]);
    if (n == (ssize_t)sizeof rep && rep.stage == ST_EXEC) {
        snprintf(err, errlen, "Cannot execute (%s): %s", strerror(rep.err), path);
        *exit_code = rep.err == ENOENT ? 127 : 126;
        waitpid(pid, NULL, 0);
        close(nfd);
        return -1;
    }
    *notify_fd = nfd;
    return pid;
}
