/* wrapcall.c: what one read/write/send/recv of a socket costs through the libc symbol (under
 * LD_PRELOAD=libuvpn.so: through its wrapper) against the same system call made directly
 * (syscall(2): never interposed), on an idle non-blocking TCP connection to HOST:PORT, so the
 * calls are cheap and the wrapper's share shows. Built and run by scripts/bench/uvpn_wrapcall.ts.
 *   wrapcall HOST PORT CALLS   -> one line per call: "NAME libc_ns syscall_ns" */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: wrapcall HOST PORT CALLS\n");
        return 2;
    }
    long n = atol(argv[3]);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(argv[1], argv[2], &hints, &ai)) {
        fprintf(stderr, "wrapcall: cannot resolve: %s\n", argv[1]);
        return 1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        perror("wrapcall: connect");
        return 1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char buf[100];
    memset(buf, 0, sizeof buf);
    /* Each pair: the same call through libc and directly; rounds interleaved, best round kept. */
    const char *names[] = {"read", "recv", "write", "send"};
    for (int c = 0; c < 4; c++) {
        double best[2] = {1e18, 1e18};
        for (int round = 0; round < 5; round++) {
            for (int way = 0; way < 2; way++) {
                double t = now_ns();
                for (long i = 0; i < n; i++) {
                    switch (c * 2 + way) {
                    case 0: (void)!read(fd, buf, sizeof buf); break;
                    case 1: (void)!syscall(SYS_read, fd, buf, sizeof buf); break;
                    case 2: (void)!recv(fd, buf, sizeof buf, 0); break;
                    case 3: (void)!syscall(SYS_recvfrom, fd, buf, sizeof buf, 0, NULL, NULL); break;
                    case 4: (void)!write(fd, buf, 0); break;
                    case 5: (void)!syscall(SYS_write, fd, buf, 0); break;
                    case 6: (void)!send(fd, buf, 0, 0); break;
                    case 7: (void)!syscall(SYS_sendto, fd, buf, 0, 0, NULL, 0); break;
                    }
                }
                double per = (now_ns() - t) / (double)n;
                if (per < best[way]) best[way] = per;
            }
        }
        printf("%s %.1f %.1f\n", names[c], best[0], best[1]);
    }
    close(fd);
    return 0;
}
