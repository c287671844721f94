/* launch.c: `uvpn_supervise [--as NAME] [--nested exec|fail] [--notice] [--xufs] -- PATH ARGV0 [ARGS...]`,
 * the launcher that runs a program under the seccomp supervisor without Deno (exported as
 * myrt_main; native/launcher/uvpn_supervise.c is its main). Used by `uvpn_register -r -- CMD`
 * for static programs and by libuvpn.so's exec wrappers when an overlay program execs a static
 * one (uvpn/wrap/staticexec.c). Three processes:
 *
 *   front (F)      this process, the pid the caller knows: forwards the signals processes send
 *                  it to the program and exits as the program does (its status, or the same
 *                  signal), so timeout, sh, srun, nohup see what they expect;
 *   supervisor (S) F's child, a subreaper: starts the program under the filter (spawn.c), then
 *                  leaves the session (no terminal signals) and serves the stopped calls
 *                  (supervisor.c) until no process uses the filter any more: daemons that
 *                  outlive the program keep their overlay; it then unregisters and exits;
 *   program (C)    S's child (so S may take its sockets: Yama's ptrace_scope 1 allows a
 *                  descendant), with F's environment, signal dispositions and mask.
 *
 * S reports to F over a pipe: the program's pid, then its wait status (or why it could not be
 * started). A program already under a supervisor (EBUSY: supervision does not nest) is, with
 * --nested exec, exec'd by F directly: the filter it inherits already serves it. */
#include "supervisor/launch.h"
#include "supervisor/spawn.h"
#include "supervisor/target.h"
#include "supervisor/xufs.h"
#include "uvpn/core/engine.h"
#include "common/log.h"

/* A sanitizer build checks the supervisor for leaks when it is done (it ends with _exit, which
 * skips LeakSanitizer's check at exit); detect_leaks=0, the default of the sanitizer pass,
 * turns the check off (tests/uvpn/supervisor_leak_test.ts turns it on). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MYRT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(MYRT_ASAN)
#define MYRT_ASAN 1
#endif
#ifdef MYRT_ASAN
#include <sanitizer/lsan_interface.h>
#endif
#ifdef MYRT_COVERAGE
void __gcov_dump(void);
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT int myrt_abi(void); /* supervisor.c */

extern char **environ;

/* What S tells F. */
enum { R_STARTED = 1, R_FAILED, R_DIRECT, R_EXITED };
struct report {
    int32_t type, a, b; /* STARTED: pid, S's pid; FAILED: exit code; EXITED: wait status, remaining */
    char text[480];
};

/* The signals F passes on when a process sent them (the terminal's reach the program itself:
 * it is in F's process group). */
static const int FORWARDED[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT};
#define N_FORWARDED (int)(sizeof FORWARDED / sizeof FORWARDED[0])

typedef struct {
    const char *as;     /* message prefix */
    int nested_exec;    /* EBUSY: exec directly */
    int notice;         /* say so when processes outlive the program */
    const char *path;
    char **argv;
} opts;

#define USAGE "uvpn_supervise [--as NAME] [--nested exec|fail] [--notice] [--xufs] -- PATH ARGV0 [ARGS...]"

static int usage(const char *as)
{
    fprintf(stderr, "%s: usage: " USAGE "\n", as);
    return 2;
}

static const char HELP[] =
    "usage: " USAGE "\n"
    "Runs PATH (with ARGV0 and ARGS) in the UVPN overlay under the seccomp supervisor, keeping this\n"
    "process's id: signals sent to it reach the program, and it exits as the program does. The\n"
    "supervisor stays while processes the program started live (docs/UVPN.md).\n"
    "  --as NAME          prefix of error messages (default uvpn)\n"
    "  --nested exec|fail already under a supervisor: exec PATH directly, or fail (default)\n"
    "  --notice           say on stderr when processes outlive the program\n"
    "  --xufs             XUFS mode: serve the program's paths under the session's mount\n"
    "                     (XUFS_MOUNT, XUFS_CACHE, XUFS_SOCK) instead of the network\n"
    "Environment: as libuvpn.so's (UVPN_SRC_ADDR, UVPN_HOME_PROXY, ...), read for the program.\n";

static void send_report(int fd, const struct report *r)
{
    ssize_t w;
    do w = write(fd, r, sizeof *r);
    while (w < 0 && errno == EINTR);
}

/* Closes every descriptor from 3 up except those in keep. */
static void close_others(const int *keep, int n)
{
    unsigned int from = 3;
    for (;;) {
        int next = -1;
        for (int i = 0; i < n; i++)
            if (keep[i] >= (int)from && (next < 0 || keep[i] < next)) next = keep[i];
        if (next < 0) {
            syscall(SYS_close_range, from, ~0U, 0);
            return;
        }
        if ((unsigned int)next > from) syscall(SYS_close_range, from, (unsigned int)next - 1, 0);
        from = (unsigned int)next + 1;
    }
}

typedef struct {
    int rep;
    const opts *o;
} exit_ctx;

static void program_exited(void *ctx, int status, int remaining)
{
    exit_ctx *e = ctx;
    struct report r = {R_EXITED, status, remaining, ""};
    send_report(e->rep, &r);
    close(e->rep);
    if (!remaining) return;
    dbg("pid exited; processes it started stay under this supervisor (pid %d)", (int)getpid());
    if (e->o->notice)
        fprintf(stderr, "%s: %s exited; processes it started stay in the overlay under the supervisor "
                        "(pid %d), which exits with the last of them\n", e->o->as, e->o->path, (int)getpid());
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 2), close(null); /* nobody waits for our output any more */
}

/* S: starts the program, then supervises until no process uses the filter. Never returns. */
static void supervisor(const opts *o, int rep, pid_t front, const sp_signals *sig)
{
    char **envp = environ;
    sv_init(envp);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int front_pidfd = (int)syscall(SYS_pidfd_open, front, 0);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int chld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    struct report r = {0, 0, 0, ""};
    int nfd = -1, code = 126;
    pid_t pid = sp_spawn(o->path, o->argv, envp, sig, &nfd, &code, r.text, sizeof r.text);
    if (pid < 0) {
        int busy = strstr(r.text, "Already under a seccomp supervisor") != NULL;
        r.type = busy && o->nested_exec ? R_DIRECT : R_FAILED;
        r.a = code;
        send_report(rep, &r);
        _exit(0);
    }
    r.type = R_STARTED;
    r.a = pid;
    r.b = getpid();
    send_report(rep, &r);
    dbg("supervising pid %d (%s)", (int)pid, o->path);
    /* Out of the terminal's session: its signals are the program's, not ours. */
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) dup2(null, 0), dup2(null, 1), close(null);
    int keep[] = {nfd, rep, chld_fd, front_pidfd};
    tg_forget(); /* its pidfds are among the others */
    close_others(keep, 4);
    if (!xs_mode) eng_start(); /* the link to the home router now, off the loop: INFO, the router's address */
    else xs_start(); /* the short link to the cache (the program waits in its first call meanwhile) */
    exit_ctx e = {rep, o};
    sv_loop(nfd, pid, chld_fd, front_pidfd, program_exited, &e);
    sv_finish(nfd);
    if (xs_mode) xs_finish();
    dbg("supervisor: no supervised process left");
#ifdef MYRT_ASAN
    __lsan_do_leak_check();
#endif
#ifdef MYRT_COVERAGE
    __gcov_dump(); /* the coverage build's counters, which _exit would not write */
#endif
    _exit(0);
}

/* F: exits as the program did. */
static void mirror(int status)
{
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int s = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
    prctl(PR_SET_DUMPABLE, 0); /* the program dumped its core, if any; we do not */
    signal(s, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, s);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(s);
    _exit(128 + s);
}

static int read_report(int fd, struct report *r)
{
    ssize_t n;
    do n = read(fd, r, sizeof *r);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *r;
}

EXPORT int myrt_main(int argc, char **argv)
{
    opts o = {"uvpn", 0, 0, NULL, NULL};
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("uvpn_supervise (MyRT, libmyrt.so ABI %d)\n", myrt_abi());
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(HELP, stdout);
        return 0;
    }
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--as") == 0 && i + 1 < argc) o.as = argv[++i];
        else if (strcmp(argv[i], "--nested") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "exec") && strcmp(v, "fail")) return usage(o.as);
            o.nested_exec = strcmp(v, "exec") == 0;
        } else if (strcmp(argv[i], "--notice") == 0) o.notice = 1;
        else if (strcmp(argv[i], "--xufs") == 0) xs_enable();
        else return usage(o.as);
    }
    if (argc - i < 2) return usage(o.as);
    o.path = argv[i];
    o.argv = argv + i + 1;

    /* The program gets what this process was given: ignored dispositions and the mask. */
    sp_signals sig;
    sigemptyset(&sig.ignored);
    sigprocmask(SIG_SETMASK, NULL, &sig.mask);
    for (int s = 1; s < 65; s++) {
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) sigaddset(&sig.ignored, s);
    }
    sigset_t fwd;
    sigemptyset(&fwd);
    for (int k = 0; k < N_FORWARDED; k++) sigaddset(&fwd, FORWARDED[k]);
    sigprocmask(SIG_BLOCK, &fwd, NULL); /* until the program's pid is known, they wait */
    int sfd = signalfd(-1, &fwd, SFD_CLOEXEC);

    int p[2];
    if (pipe2(p, O_CLOEXEC)) {
        fprintf(stderr, "%s: Cannot create a pipe: %s\n", o.as, strerror(errno));
        return 126;
    }
    pid_t front = getpid(), s = fork();
    if (s < 0) {
        fprintf(stderr, "%s: Cannot fork: %s\n", o.as, strerror(errno));
        return 126;
    }
    if (s == 0) {
        close(p[0]);
        if (sfd >= 0) close(sfd);
        supervisor(&o, p[1], front, &sig);
    }
    close(p[1]);
    struct report r;
    if (!read_report(p[0], &r)) {
        fprintf(stderr, "%s: The supervisor died before starting: %s\n", o.as, o.path);
        return 126;
    }
    if (r.type == R_DIRECT) { /* already supervised: the inherited filter serves it */
        while (waitpid(s, NULL, 0) < 0 && errno == EINTR) { /* S is done */ }
        sigprocmask(SIG_SETMASK, &sig.mask, NULL);
        execve(o.path, o.argv, environ);
        fprintf(stderr, "%s: Cannot execute (%s): %s\n", o.as, strerror(errno), o.path);
        return errno == ENOENT ? 127 : 126;
    }
    if (r.type != R_STARTED) {
        while (waitpid(s, NULL, 0) < 0 && errno == EINTR) { /* S is done */ }
        fprintf(stderr, "%s: %s\n", o.as, r.text);
        return r.a;
    }
    pid_t pid = r.a;
    for (;;) {
        struct pollfd w[2] = {{p[0], POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(w, sfd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (w[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_code != SI_KERNEL)
                kill(pid, (int)si.ssi_signo); /* sent by a process: pass it on */
        }
        if (w[0].revents & (POLLIN | POLLHUP)) {
            if (read_report(p[0], &r) && r.type == R_EXITED) mirror(r.a);
            break;
        }
    }
    fprintf(stderr, "%s: Lost track of the supervised program: pid %d\n", o.as, (int)pid);
    return 126;
}
