/* splice_speed.c: what sending 64 KiB session-sized frames into a loopback TCP connection costs
 * the sender and the receiver, in CPU seconds per GB, written as the routers write a link
 * (native/router/core/link.c: writev of head, payload, tag) or with the payload by reference, as
 * tried on branch h13-splice (heads and tags written into a pipe, the payload vmspliced into it,
 * the pipe spliced into the socket; docs/BENCHMARKS.md). The payloads come from a ring of buffers (as a replay buffer), each filled
 * with memcpy just before it is sent (as a read from a program fills a chunk; FILL=0: not).
 * The receiver reads 1 MiB at a time (a router's link input buffer) and discards. Built and run
 * by scripts/bench/splice_speed.sh.
 *   splice_speed MODE GB [FILL=1]   (MODE: write or splice) -> one line: sender's and receiver's
 *   CPU s/GB, throughput */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAY 65535            /* a DATA payload (SF_MAX_DATA) */
#define RING (8u << 20)      /* the payloads' ring: larger than the caches hold per core */
#define BATCH 16             /* frames per write (or per pipe fill) */
#define PIPE_FILL (700 * 1024) /* pipe bytes spliced at once */

static double cpu_s(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The receiver: reads until EOF, reports its CPU per GB on the pipe back to the sender. */
static void receive(int ls, int report)
{
    int c = accept(ls, NULL, NULL);
    if (c < 0) die("accept");
    size_t cap = 1u << 20;
    char *buf = malloc(cap);
    uint64_t got = 0;
    ssize_t r;
    double c0 = cpu_s();
    while ((r = read(c, buf, cap)) > 0) got += (uint64_t)r;
    double per_gb = (cpu_s() - c0) / ((double)got / 1e9);
    if (write(report, &per_gb, sizeof per_gb) != sizeof per_gb) die("write");
    exit(0);
}

/* Writes iov[0..k) whole into fd with writev. */
static void write_all(int fd, struct iovec *iov, int k)
{
    int i = 0;
    while (i < k) {
        ssize_t w = writev(fd, iov + i, k - i);
        if (w < 0) die("writev");
        while (w > 0) {
            size_t take = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            w -= (ssize_t)take;
            if (iov[i].iov_len == 0) i++;
        }
    }
}

/* Splices n bytes of the pipe into the socket. */
static void drain(int pr, int s, size_t n)
{
    while (n) {
        ssize_t m = splice(pr, NULL, s, NULL, n, SPLICE_F_MOVE);
        if (m <= 0) die("splice");
        n -= (size_t)m;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "write") && strcmp(argv[1], "splice"))) {
        fprintf(stderr, "usage: splice_speed write|splice GB [FILL=1]\n");
        return 2;
    }
    int by_ref = !strcmp(argv[1], "splice");
    uint64_t total = (uint64_t)(atof(argv[2]) * 1e9);
    int fill = argc > 3 ? atoi(argv[3]) : 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0), rep[2];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&a, &al) ||
        pipe(rep))
        die("listen");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) receive(ls, rep[1]);
    int s = socket(AF_INET, SOCK_STREAM, 0), p[2] = {-1, -1};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    if (by_ref && (pipe(p) != 0 || fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0)) die("pipe");
    uint8_t *ring = aligned_alloc(4096, RING), *src = malloc(PAY), ht[48];
    memset(ring, 1, RING);
    memset(src, 7, PAY);
    memset(ht, 9, sizeof ht);
    size_t nfr = RING / PAY, fi = 0;
    uint64_t sent = 0;
    double t0 = now_s(), c0 = cpu_s();
    while (sent < total) {
        struct iovec iov[3 * BATCH];
        int k = 0;
        for (int b = 0; b < BATCH; b++) {
            uint8_t *pay = ring + (fi++ % nfr) * PAY;
            if (fill) memcpy(pay, src, PAY);
            iov[k++] = (struct iovec){ht, 32};
            iov[k++] = (struct iovec){pay, PAY};
            iov[k++] = (struct iovec){ht + 32, 16};
            sent += 32 + PAY + 16;
        }
        if (!by_ref) {
            write_all(s, iov, k);
            continue;
        }
        size_t in_pipe = 0;
        for (int i = 0; i < k; i++) { /* head, tag: copied into the pipe; payload: by reference */
            ssize_t w = iov[i].iov_len == PAY ? vmsplice(p[1], &iov[i], 1, 0) : write(p[1], iov[i].iov_base, iov[i].iov_len);
            if (w != (ssize_t)iov[i].iov_len) die("pipe write");
            in_pipe += (size_t)w;
            if (in_pipe > PIPE_FILL || i == k - 1) {
                drain(p[0], s, in_pipe);
                in_pipe = 0;
            }
        }
    }
    double c1 = cpu_s(), t1 = now_s();
    shutdown(s, SHUT_WR);
    double recv_gb;
    if (read(rep[0], &recv_gb, sizeof recv_gb) != sizeof recv_gb) die("read");
    waitpid(pid, NULL, 0);
    printf("%s fill=%d: sender %.3f CPU s/GB, receiver %.3f, both %.3f; %.2f Gbit/s\n", argv[1], fill,
           (c1 - c0) / ((double)sent / 1e9), recv_gb, (c1 - c0) / ((double)sent / 1e9) + recv_gb, (double)sent * 8 / 1e9 / (t1 - t0));
    return 0;
}
