/* target.h: what the seccomp supervisor does to a supervised process stopped in a syscall:
 * take a duplicate of one of its fds (pidfd_getfd, Linux 5.6), read and write its memory
 * (process_vm_readv/writev, /proc/PID/mem), install an fd into it (SECCOMP_IOCTL_NOTIF_ADDFD, 5.9), check that
 * a notification is still pending (SECCOMP_IOCTL_NOTIF_ID_VALID) and answer it. All of them
 * need ptrace access to the target (the supervisor is its ancestor: fine under Yama
 * ptrace_scope 0 and 1). Errors are -errno. */
#ifndef MYRT_TARGET_H
#define MYRT_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Closes the pidfds tg_getfd keeps (before closing descriptors wholesale: close_range). */
void tg_forget(void);

/* The thread group (process) of thread tid, from /proc (0 if unknown). Seccomp notifications
 * name the calling thread; pidfd_open wants its process. */
pid_t tg_tgid(pid_t tid);
/* A duplicate of the target's fd (same open file description), close-on-exec. */
int tg_getfd(pid_t pid, int fd);
/* Exactly len bytes at addr in the target's memory. 0 or -errno (-EFAULT for a bad address). */
int tg_read(pid_t pid, uint64_t addr, void *buf, size_t len);
int tg_write(pid_t pid, uint64_t addr, const void *buf, size_t len);
/* Writes len bytes at addr through /proc/PID/mem, which (unlike process_vm_writev) also writes
 * to read-only private mappings, copying the page as the kernel does for a debugger. 0 or -errno. */
int tg_poke(pid_t pid, uint64_t addr, const void *buf, size_t len);
/* 1 while notification id is still waiting for its answer, else 0. */
int tg_valid(int nfd, uint64_t id);
/* Installs srcfd into the target as its answer to notification id (the syscall returns the new
 * fd number). Returns that number or -errno. */
int tg_addfd_reply(int nfd, uint64_t id, int srcfd, int cloexec);
/* Answers notification id: the syscall returns val, or fails with err (> 0) when err is set. */
void tg_reply(int nfd, uint64_t id, int64_t val, int err);
/* Lets the stopped syscall run in the kernel as the program made it. */
void tg_continue(int nfd, uint64_t id);
/* Writes the socket address (ss, sl) to the target's (addr, addrlen) pointers like the kernel
 * does (truncated to *addrlen, *addrlen set to sl). addr 0: nothing. 0 or -errno. */
int tg_put_sockaddr(pid_t pid, uint64_t addr, uint64_t addrlen, const void *ss, uint32_t sl);

#endif
