/* job.h: a stopped call of the supervised program that the supervisor answers, and the worker
 * threads that finish calls which may wait on the network (connect, listen, accept, a blocking
 * receive), so the notification loop (supervisor.c) never blocks. Also the small helpers every
 * call handler uses to reach the program's socket and arguments. */
#ifndef MYRT_JOB_H
#define MYRT_JOB_H

#include "uvpn/core/policy.h"

#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/types.h>

struct pmsg;

typedef struct job {
    void (*work)(struct job *); /* what the worker thread does */
    int nfd;
    struct seccomp_notif req;
    int dup;                 /* the program's socket (accept, listen) */
    ino_t ino;
    vinfo st;
    struct sockaddr_storage ss; /* connect: destination */
    socklen_t sl;
    struct pmsg *pm;         /* recvfrom, recvmsg: the program's buffers (freed with the job) */
    pol_pending pend;        /* a blocking connect under way (stream.c) */
    struct job *next;        /* queued for an idle worker (job.c) */
} job;

/* Inode of an fd (the key of sockstate.h), or 0. */
ino_t inode_of(int fd);
/* Reads the sockaddr argument (addr, len) of the stopped call. 0, or -errno. */
int read_addr(const struct seccomp_notif *q, uint64_t addr, uint64_t len, struct sockaddr_storage *ss,
              socklen_t *sl);
/* A job for the stopped call q (dup: a duplicate of the program's socket, or -1). NULL: no memory. */
job *new_job(int nfd, const struct seccomp_notif *q, int dup);
/* Closes the job's duplicate of the program's socket. Workers call it before they answer: once
 * the program runs on, its close() must really close the socket (a listener the program closed
 * must refuse the next connection, not take it into the backlog of our duplicate). */
void job_drop_dup(job *j);
/* Hands j to a worker thread running work, which releases j: an idle one kept from an earlier
 * job, else a new detached one. On failure answers EAGAIN. */
void start_worker(job *j, void (*work)(job *));
/* How many worker threads are running. */
int workers_running(void);
/* Counts a stopped call (its FILTER_NR) as the loop receives it; start_worker counts the ones
 * handed to workers. job_log_counts writes both to the log (UVPN_DEBUG): "supervisor: N stopped
 * calls (connect C, accept A, other O), M handed to worker threads (connect C, accept A, other
 * O)". */
void job_count_call(int nr);
void job_log_counts(void);
/* The program's socket args[0] and its state, when it has overlay state of one of the kinds
 * in mask (bit per vkind). Returns the duplicate (caller closes) or -1. */
int overlay_socket(const struct seccomp_notif *q, int mask, ino_t *ino, vinfo *st);
/* For a socket whose state *st (inode ino) may be a pending overlay connect: 0 when usable now
 * (not pending, or it just got through: the new state stored), 1 while in progress, -errno when
 * it failed. */
int conn_gate(ino_t ino, vinfo *st);
/* Waits until the program's socket j->dup is readable while the caller still waits (the call
 * may be interrupted or the program gone). 1 ready, 0 gone. */
int wait_readable(job *j);

#endif
