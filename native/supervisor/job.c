/* job.c: stopped calls handed to worker threads, and access to the program's socket (job.h). */
#include "supervisor/job.h"
#include "supervisor/sockstate.h"
#include "supervisor/target.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_POLL_MS 250   /* a blocking call re-checks that its caller still waits */

static atomic_int workers;

ino_t inode_of(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 ? sb.st_ino : 0;
}

int read_addr(const struct seccomp_notif *q, uint64_t addr, uint64_t len, struct sockaddr_storage *ss,
              socklen_t *sl)
{
    if (!addr || len < sizeof(sa_family_t) || len > sizeof *ss) return -EINVAL;
    memset(ss, 0, sizeof *ss);
    int r = tg_read((pid_t)q->pid, addr, ss, (size_t)len);
    if (r) return r;
    *sl = (socklen_t)len;
    return 0;
}

void job_drop_dup(job *j)
{
    if (j->dup >= 0) close(j->dup);
    j->dup = -1;
}

/* The worker thread: runs j->work, then releases the job. */
static void *run_job(void *arg)
{
    job *j = arg;
    j->work(j);
    if (j->dup >= 0) close(j->dup);
    free(j->pm);
    free(j);
    atomic_fetch_sub(&workers, 1);
    return NULL;
}

void start_worker(job *j, void (*work)(job *))
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    j->work = work;
    atomic_fetch_add(&workers, 1);
    if (pthread_create(&t, &at, run_job, j)) {
        atomic_fetch_sub(&workers, 1);
        tg_reply(j->nfd, j->req.id, 0, EAGAIN);
        if (j->dup >= 0) close(j->dup);
        free(j->pm);
        free(j);
    }
    pthread_attr_destroy(&at);
}

job *new_job(int nfd, const struct seccomp_notif *q, int dup)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->nfd = nfd;
    j->req = *q;
    j->dup = dup;
    return j;
}

int workers_running(void)
{
    return atomic_load(&workers);
}

int overlay_socket(const struct seccomp_notif *q, int mask, ino_t *ino, vinfo *st)
{
    if (ss_count() == 0) return -1;
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) return -1;
    *ino = inode_of(fd);
    if (ss_get(*ino, st) && (mask & (1 << st->kind))) return fd;
    close(fd);
    return -1;
}

int wait_readable(job *j)
{
    for (;;) {
        if (!tg_valid(j->nfd, j->req.id)) return 0;
        struct pollfd p = {j->dup, POLLIN, 0};
        int r = poll(&p, 1, WAIT_POLL_MS);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 1; /* let accept report it */
    }
}

int conn_gate(ino_t ino, vinfo *st)
{
    if (st->kind != VS_CONNECTING) return 0;
    int r = pol_settle(st, 0);
    if (r == 1) {
        ss_set(ino, st);
        return 0;
    }
    return r == 0 ? 1 : r == -ECONNABORTED ? 0 : r;
}
