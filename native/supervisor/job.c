/* job.c: stopped calls handed to worker threads, and access to the program's socket (job.h). */
#include "supervisor/job.h"
#include "supervisor/filter.h"
#include "supervisor/sockstate.h"
#include "supervisor/target.h"
#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAIT_POLL_MS 250   /* a blocking call re-checks that its caller still waits */

static atomic_int workers;

/* Stopped calls by kind (connect, accept, other): received, and handed to worker threads. */
enum { K_CONNECT, K_ACCEPT, K_OTHER, K_N };
static atomic_long received[K_N], handed[K_N];

static int kind_of(int nr)
{
    return nr == SYS_connect ? K_CONNECT : nr == SYS_accept || nr == SYS_accept4 ? K_ACCEPT : K_OTHER;
}

void job_count_call(int nr) { atomic_fetch_add(&received[kind_of(nr)], 1); }

void job_log_counts(void)
{
    long r[K_N], h[K_N];
    for (int k = 0; k < K_N; k++) r[k] = atomic_load(&received[k]), h[k] = atomic_load(&handed[k]);
    dbg("supervisor: %ld stopped calls (connect %ld, accept %ld, other %ld), %ld handed to worker threads "
        "(connect %ld, accept %ld, other %ld)",
        r[0] + r[1] + r[2], r[0], r[1], r[2], h[0] + h[1] + h[2], h[0], h[1], h[2]);
}

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

/* Worker threads are kept a while once their job is done (IDLE_MS) and take the next job, so a
 * burst of connects and accepts does not pay a thread's creation and teardown each (a clone3, a
 * stack's mmap and munmap: one per connection before). A job never waits for a busy thread:
 * when none is idle, a new one is started, as before. */
#define IDLE_MS 2000

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static job *queue_head, *queue_tail;
static int idle; /* threads waiting for a job and not yet promised one */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's threads: it starts with an empty pool. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool_lock, NULL);
    pthread_cond_init(&pool_cond, NULL);
    queue_head = queue_tail = NULL;
    idle = 0;
}

static void pool_init(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

static void finish_job(job *j)
{
    j->work(j);
    if (j->dup >= 0) close(j->dup);
    free(j->pm);
    free(j);
    atomic_fetch_sub(&workers, 1);
}

/* The worker thread: runs its first job, then the jobs queued for it until none comes for IDLE_MS. */
static void *run_job(void *arg)
{
    for (job *j = arg; j;) {
        finish_job(j);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += IDLE_MS / 1000;
        pthread_mutex_lock(&pool_lock);
        idle++;
        while (!queue_head && pthread_cond_timedwait(&pool_cond, &pool_lock, &until) != ETIMEDOUT) {
        }
        j = queue_head;
        if (j) {
            queue_head = j->next; /* the producer counted this thread out of idle */
            if (!queue_head) queue_tail = NULL;
        } else {
            idle--;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    return NULL;
}

void start_worker(job *j, void (*work)(job *))
{
    pthread_once(&pool_once, pool_init);
    j->work = work;
    j->next = NULL;
    atomic_fetch_add(&handed[kind_of(FILTER_NR(j->req.data.nr))], 1);
    atomic_fetch_add(&workers, 1);
    pthread_mutex_lock(&pool_lock);
    if (idle > 0) {
        idle--;
        if (queue_tail) queue_tail->next = j;
        else queue_head = j;
        queue_tail = j;
        pthread_cond_signal(&pool_cond);
        pthread_mutex_unlock(&pool_lock);
        return;
    }
    pthread_mutex_unlock(&pool_lock);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
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
