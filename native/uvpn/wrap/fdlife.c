/* fdlife.c: overlay sockets that outlive their process's view of them (docs/UVPN.md, "The socket
 * surface"): inherited across exec, and closed in bulk by close_range/closefrom.
 *
 * Exec: the exec wrappers (execve, execv, execvp, execvpe, fexecve, posix_spawn, posix_spawnp)
 * add UVPN_INHERITED_FDS to the new program's environment: one entry per inheritable fd with
 * overlay state, `fd:dev:ino:state` (state = the vinfo bytes in hex, prefixed by their size so a
 * different libuvpn.so build ignores them). At load, libuvpn.so adopts each entry whose fd is
 * still that socket (same device and inode), so getpeername/getsockname stay virtual after exec
 * (sshd's re-exec, a shell's `exec 3<>...`, python's subprocess pass_fds). The wrappers write on
 * the stack only: a vfork child may run them.
 *
 * A static program (which LD_PRELOAD cannot reach) is exec'd through the launcher
 * uvpn_supervise instead, under the seccomp supervisor (staticexec.c). execl, execle and execlp
 * are wrapped too (glibc's call its internal execve, which no wrapper sees).
 *
 * SCM_RIGHTS: sendmsg writes the state of each overlay socket it passes to a file named by the
 * socket's cookie (SO_COOKIE: unique for the system's uptime, never reused), in
 * $XDG_RUNTIME_DIR/uvpn-UID or /tmp/uvpn-UID (mode 0700, owned by us); recvmsg adopts the state
 * of each socket it receives and removes the file. */
#include "uvpn/wrap/wrap.h"
#include "uvpn/wrap/fdlife.h"
#include "common/real.h"
#include "uvpn/wrap/fdtable.h"
#include "common/log.h"
#include "uvpn/core/policy.h"
#include "uvpn/core/engine.h"
#include "uvpn/wrap/staticexec.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>

#define VAR "UVPN_INHERITED_FDS"
#define LINKS_VAR "UVPN_INHERITED_LINKS" /* fd:dev:ino;... of the engine links the new image keeps */
#define LINKS_TEXT 256
#define MAX_ENV 4096      /* larger environments pass unchanged */
#define STATE_TEXT 8192   /* room for the variable: about 90 sockets */

extern char **environ;

static struct {
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                       const posix_spawnattr_t *, char *const[], char *const[]);
    int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
    int (*close_range)(unsigned int, unsigned int, int);
    void (*closefrom)(int);
} fr;
static pthread_once_t fr_once = PTHREAD_ONCE_INIT;

static void fr_load(void)
{
    static const char *const names[] = {"execve", "execvpe", "fexecve", "posix_spawn",
                                        "posix_spawnp", "close_range", "closefrom"};
    void **slots[] = {(void **)&fr.execve, (void **)&fr.execvpe, (void **)&fr.fexecve,
                      (void **)&fr.posix_spawn, (void **)&fr.posix_spawnp,
                      (void **)&fr.close_range, (void **)&fr.closefrom};
    int e = errno;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) *slots[i] = dlsym(RTLD_NEXT, names[i]);
    errno = e;
}

static void fr_init(void) { pthread_once(&fr_once, fr_load); }

/* ---- exec ---------------------------------------------------------------------------------- */

struct text {
    char *p;
    size_t len, cap;
    int n;
};

/* Writes v as "SIZE.HEX" (the vinfo bytes; SIZE lets another build of the library refuse
 * them). Returns the length written, or 0 when cap is too small. */
static size_t state_put(char *out, size_t cap, const vinfo *v)
{
    if (cap < 24 + 2 * sizeof *v) return 0;
    size_t n = (size_t)snprintf(out, cap, "%zu.", sizeof *v);
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < sizeof *v; i++) n += (size_t)snprintf(out + n, 3, "%02x", b[i]);
    return n;
}

/* Parses what state_put wrote. 0, or -1 when malformed or from another build. */
static int state_get(const char *s, vinfo *v)
{
    size_t size;
    int used = 0;
    if (sscanf(s, "%zu.%n", &size, &used) != 1 || !used || size != sizeof *v) return -1;
    unsigned char *b = (unsigned char *)v;
    for (size_t i = 0; i < sizeof *v; i++)
        if (sscanf(s + used + 2 * i, "%2hhx", &b[i]) != 1) return -1;
    return 0;
}

static int add_entry(int fd, const vinfo *v, dev_t dev, ino_t ino, void *ctx)
{
    struct text *t = ctx;
    if (v->kind == VS_CONNECTING) return 0; /* the engine finishing it does not cross exec */
    int fl = real.fcntl(fd, F_GETFD);
    struct stat st;
    if (fl < 0 || (fl & FD_CLOEXEC) || fstat(fd, &st) || st.st_dev != dev || st.st_ino != ino)
        return 0; /* closed on exec, or closed behind our back */
    size_t n = (size_t)snprintf(t->p + t->len, t->cap - t->len, "%s%d:%lu:%lu:", t->n ? ";" : "",
                                fd, (unsigned long)dev, (unsigned long)ino);
    size_t m = t->len + n < t->cap ? state_put(t->p + t->len + n, t->cap - t->len - n, v) : 0;
    if (!m) {
        t->p[t->len] = 0;
        return 1; /* full: the remaining sockets lose their state in the new program */
    }
    t->len += n + m;
    t->n++;
    return 0;
}

/* LINKS_VAR=... for the links this process holds (engine.h: its own and inherited ones), which
 * the new image keeps open; 0 when there are none to pass (not inheritable, or none). */
static int links_text(char *buf, size_t cap)
{
    int fds[16], n = eng_links(fds, 16), k = 0;
    size_t len = (size_t)snprintf(buf, cap, LINKS_VAR "=");
    for (int i = 0; i < n && len + 64 < cap; i++) {
        struct stat st;
        int fl = real.fcntl(fds[i], F_GETFD);
        if (fl < 0 || (fl & FD_CLOEXEC) || fstat(fds[i], &st)) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%d:%lu:%lu", k++ ? ";" : "", fds[i],
                                (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    }
    return k > 0;
}

/* The environment for the new program: envp without VAR and LINKS_VAR, plus VAR when
 * inheritable sockets have state and LINKS_VAR when links are kept. Returns envp itself when
 * nothing changes. out has MAX_ENV + 3 slots. */
static char *const *with_state(char *const *envp, char **out, char *buf, char *lbuf)
{
    if (!envp) return envp;
    int e = errno;
    struct text t = {buf, 0, STATE_TEXT, 0};
    t.len = (size_t)snprintf(buf, STATE_TEXT, VAR "=");
    fdt_each(add_entry, &t);
    int links = links_text(lbuf, LINKS_TEXT);
    errno = e;
    size_t vl = strlen(VAR "="), ll = strlen(LINKS_VAR "="), n = 0;
    int had = 0;
    for (char *const *p = envp; *p; p++) had |= strncmp(*p, VAR "=", vl) == 0 || strncmp(*p, LINKS_VAR "=", ll) == 0;
    if (!t.n && !links && !had) return envp;
    for (char *const *p = envp; *p; p++) {
        if (strncmp(*p, VAR "=", vl) == 0 || strncmp(*p, LINKS_VAR "=", ll) == 0) continue;
        if (n == MAX_ENV) return envp;
        out[n++] = *p;
    }
    if (t.n) out[n++] = buf;
    if (links) out[n++] = lbuf;
    out[n] = NULL;
    return out;
}

#define STATE_ENV(envp)                                                                          \
    char state_buf_[STATE_TEXT], links_buf_[LINKS_TEXT], *state_env_[MAX_ENV + 3];              \
    char *const *new_env_ = with_state((envp), state_env_, state_buf_, links_buf_)

/* ---- exec: static programs through the launcher (staticexec.h) --------------------------- */

static int do_execve(const char *path, char *const argv[], char *const envp[], void *ctx)
{
    (void)ctx;
    return fr.execve(path, argv, envp);
}

struct spawn_ctx {
    pid_t *pid;
    const posix_spawn_file_actions_t *fa;
    const posix_spawnattr_t *attr;
};

static int do_spawn(const char *path, char *const argv[], char *const envp[], void *ctx)
{
    struct spawn_ctx *c = ctx;
    return fr.posix_spawn(c->pid, path, c->fa, c->attr, argv, envp);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    fr_init();
    STATE_ENV(envp);
    if (se_wanted(path, new_env_)) return se_launch(path, argv, new_env_, do_execve, NULL);
    return fr.execve(path, argv, new_env_);
}

EXPORT int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    fr_init();
    STATE_ENV(envp);
    char found[PATH_MAX];
    if (se_search(file, found, sizeof found) && se_wanted(found, new_env_))
        return se_launch(found, argv, new_env_, do_execve, NULL);
    return fr.execvpe(file, argv, new_env_);
}

EXPORT int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

/* execl, execle, execlp: glibc's call its internal execve/execvpe, which no wrapper sees. */
#define ARGS_FROM_VA(first, ap, argv, extra)                                                     \
    size_t n_ = 1;                                                                              \
    va_start(ap, first);                                                                        \
    while (va_arg(ap, char *)) n_++;                                                            \
    va_end(ap);                                                                                 \
    char *argv[n_ + 1];                                                                         \
    va_start(ap, first);                                                                        \
    argv[0] = (char *)(first);                                                                  \
    for (size_t i_ = 1; i_ <= n_; i_++) argv[i_] = va_arg(ap, char *);                          \
    extra;                                                                                      \
    va_end(ap)

EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    ARGS_FROM_VA(arg, ap, argv, (void)0);
    return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    ARGS_FROM_VA(arg, ap, argv, (void)0);
    return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    char *const *envp;
    ARGS_FROM_VA(arg, ap, argv, envp = va_arg(ap, char *const *));
    return execve(path, argv, envp);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    fr_init();
    STATE_ENV(envp);
    return fr.fexecve(fd, argv, new_env_);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    fr_init();
    STATE_ENV(envp);
    struct spawn_ctx c = {pid, fa, attr};
    if (se_wanted(path, new_env_)) return se_launch(path, argv, new_env_, do_spawn, &c);
    return fr.posix_spawn(pid, path, fa, attr, argv, new_env_);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    fr_init();
    STATE_ENV(envp);
    char found[PATH_MAX];
    struct spawn_ctx c = {pid, fa, attr};
    if (se_search(file, found, sizeof found) && se_wanted(found, new_env_))
        return se_launch(found, argv, new_env_, do_spawn, &c);
    return fr.posix_spawnp(pid, file, fa, attr, argv, new_env_);
}

/* At load: keep the links the previous program image held (LINKS_VAR), when still open. */
static void adopt_links(void)
{
    for (const char *s = getenv(LINKS_VAR); s && *s; s = strchr(s, ';') ? strchr(s, ';') + 1 : "") {
        int fd;
        unsigned long dev, ino;
        struct stat st;
        if (sscanf(s, "%d:%lu:%lu", &fd, &dev, &ino) == 3 && fstat(fd, &st) == 0 && st.st_dev == dev &&
            st.st_ino == ino)
            eng_adopt_link(fd);
    }
}

/* At load: adopt the sockets the previous program image left us. */
__attribute__((constructor)) static void adopt_inherited(void)
{
    adopt_links();
    const char *s = getenv(VAR);
    int first_fd[64], adopted = 0;
    ino_t first_ino[64];
    for (; s && *s; s = strchr(s, ';') ? strchr(s, ';') + 1 : "") {
        int fd, used = 0;
        unsigned long dev, ino;
        vinfo v;
        struct stat st;
        if (sscanf(s, "%d:%lu:%lu:%n", &fd, &dev, &ino, &used) != 3 || !used ||
            state_get(s + used, &v) || fstat(fd, &st) || st.st_dev != dev || st.st_ino != ino)
            continue;
        int shared = 0;
        for (int k = 0; k < adopted && !shared; k++) {
            if (first_ino[k] != st.st_ino) continue;
            fdt_share(first_fd[k], fd, NULL); /* dups of one socket share one state */
            shared = 1;
        }
        if (!shared && fdt_set_new(fd, &v) == 0 && adopted < 64) {
            first_fd[adopted] = fd;
            first_ino[adopted++] = st.st_ino;
        }
        dbg("exec: fd %d keeps its overlay state", fd);
    }
}

/* ---- close_range / closefrom ---------------------------------------------------------------- */

struct range {
    unsigned int lo, hi;
};

static int drop_in_range(int fd, const vinfo *v, dev_t dev, ino_t ino, void *ctx)
{
    (void)v, (void)dev, (void)ino;
    const struct range *r = ctx;
    vinfo rel;
    if ((unsigned int)fd < r->lo || (unsigned int)fd > r->hi || !fdt_clear(fd, &rel)) return 0;
    inside = 1;
    pol_release(&rel); /* the last fd of a listener: unregister it (as close does) */
    inside = 0;
    return 0;
}

/* After fds lo..hi were really closed: forget their state. */
static void closed_range(unsigned int lo, unsigned int hi)
{
    if (in_vfork_child()) return; /* the parent's table is not ours to change */
    int e = errno;
    struct range r = {lo, hi};
    fdt_each(drop_in_range, &r);
    errno = e;
}

/* close_range over first..last, leaving out the engine's own descriptors (engine.h). */
static int range_around_engine(unsigned int first, unsigned int last, int flags)
{
    unsigned int from = first;
    int r = 0;
    for (unsigned int fd = first; ; fd++) {
        if (fd > last || fd > 65536) {
            if (from <= last && fr.close_range(from, last, flags)) r = -1;
            break;
        }
        if (!eng_owns_fd((int)fd)) continue;
        if (fd > from && fr.close_range(from, fd - 1, flags)) r = -1;
        from = fd + 1;
    }
    return r;
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    fr_init();
    if (!fr.close_range) {
        errno = ENOSYS;
        return -1;
    }
    int r = range_around_engine(first, last, flags);
    if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) closed_range(first, last);
    return r;
}

EXPORT void closefrom(int lowfd)
{
    fr_init();
    if (lowfd < 0) return;
    if (fr.close_range) range_around_engine((unsigned int)lowfd, ~0U, 0);
    else if (fr.closefrom) fr.closefrom(lowfd);
    closed_range((unsigned int)lowfd, ~0U);
}

/* ---- SCM_RIGHTS ------------------------------------------------------------------------------ */

/* The file for the socket fd's state; 0, or -1 when fd is no socket or the directory is unsafe. */
static int cookie_path(int fd, char *out, size_t cap, int create)
{
    uint64_t cookie;
    socklen_t cl = sizeof cookie;
    if (real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl)) return -1;
    const char *base = getenv("XDG_RUNTIME_DIR");
    int n = snprintf(out, cap, "%s/uvpn-%u", base && *base == '/' ? base : "/tmp", (unsigned)getuid());
    if (n < 0 || (size_t)n >= cap) return -1;
    if (create) mkdir(out, 0700);
    struct stat st;
    if (lstat(out, &st) || !S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return -1;
    n = snprintf(out + n, cap - (size_t)n, "/sock-%llu", (unsigned long long)cookie);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Calls fn for every fd an SCM_RIGHTS message of msg carries. */
static void each_passed_fd(const struct msghdr *msg, void (*fn)(int fd))
{
    if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr)) return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fn(fd);
        }
    }
}

static void note_sent(int fd)
{
    vinfo v;
    char path[512], text[24 + 2 * sizeof v];
    if (!fdt_get(fd, &v) || cookie_path(fd, path, sizeof path, 1)) return;
    size_t n = state_put(text, sizeof text, &v);
    int f = real.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0) return;
    if (real.write(f, text, n) != (ssize_t)n) unlink(path);
    real.close(f);
}

static void adopt_received(int fd)
{
    vinfo v;
    char path[512], text[32 + 2 * sizeof v];
    if (cookie_path(fd, path, sizeof path, 0)) return;
    int f = real.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (f < 0) return;
    ssize_t n = real.read(f, text, sizeof text - 1);
    real.close(f);
    unlink(path);
    if (n <= 0) return;
    text[n] = 0;
    if (state_get(text, &v) == 0 && fdt_set_new(fd, &v) == 0)
        dbg("recvmsg: received fd %d keeps its overlay state", fd);
}

void fdl_scm(const struct msghdr *msg, int sent)
{
    int e = errno;
    inside = 1;
    each_passed_fd(msg, sent ? note_sent : adopt_received);
    inside = 0;
    errno = e;
}
