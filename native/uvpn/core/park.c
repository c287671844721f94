/* park.c: the holding port of a process's engine. A non-blocking overlay connect must show no
 * readiness until the router has answered, and then go on with the same socket (same open file
 * description). Until Linux 6.18.x the socket waited in the listening state and left it with
 * connect(AF_UNSPEC); Linux 6.18.44 refuses (EINVAL) a connect() on a socket that has listened,
 * so the socket now waits in SYN_SENT instead: it connects to a local listener (backlog 0) whose
 * accept queue holds one connection of ours that is never accepted, so the kernel drops every
 * SYN to it and the connect stays in progress (retransmitted SYNs are dropped too, for the
 * kernel's SYN retries, about two minutes: longer than any overlay connect timeout). Leaving it
 * is a disconnect in SYN_SENT, which works on every kernel (the direct path's race uses it). */
#include "uvpn/core/park.h"
#include "common/netio.h"
#include "common/real.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#define LOOPBACK 0x7f000001u
#define FILL_WAIT_MS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int listener = -1, filler = -1, tried;
static uint16_t port;

static int close_both(void)
{
    if (listener >= 0) real.close(listener);
    if (filler >= 0) real.close(filler);
    listener = filler = -1;
    return 0;
}

/* Opens the listener and fills its queue (lock held). The port, or 0. */
static uint16_t open_holder(int (*move_high)(int))
{
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(AF_INET, LOOPBACK, 0, &ss);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener >= 0) listener = move_high(listener);
    if (listener < 0 || real.bind(listener, (struct sockaddr *)&ss, sl) || real.listen(listener, 0)) return (uint16_t)close_both();
    sl = sizeof ss;
    uint32_t ip;
    uint16_t p = 0;
    if (real.getsockname(listener, (struct sockaddr *)&ss, &sl) || !sa_get_v4((struct sockaddr *)&ss, sl, &ip, &p) || !p)
        return (uint16_t)close_both();
    filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (filler >= 0) filler = move_high(filler);
    sl = sa_make_v4(AF_INET, LOOPBACK, p, &ss);
    if (filler < 0 || real.connect(filler, (struct sockaddr *)&ss, sl)) return (uint16_t)close_both();
    /* The queue is full once the listener is readable (the filler's handshake has completed). */
    struct pollfd pf = {listener, POLLIN, 0};
    if (real.poll(&pf, 1, FILL_WAIT_MS) != 1) return (uint16_t)close_both();
    return p;
}

int park_hold(int fd, int (*move_high)(int))
{
    int fl = real.fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    if (!(fl & O_NONBLOCK)) {
        errno = EAGAIN;
        return -1;
    }
    pthread_mutex_lock(&lock);
    if (!tried) {
        tried = 1;
        port = open_holder(move_high);
    }
    uint16_t p = port;
    pthread_mutex_unlock(&lock);
    if (!p) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    int family = AF_INET;
    socklen_t fl_len = sizeof family;
    if (real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &fl_len)) return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(family, LOOPBACK, p, &ss);
    if (real.connect(fd, (struct sockaddr *)&ss, sl) == 0) {
        /* Connected after all (the queue was not full): undo, the caller parks another way. */
        struct sockaddr unspec = {.sa_family = AF_UNSPEC};
        real.connect(fd, &unspec, sizeof unspec);
        errno = EBUSY;
        return -1;
    }
    return errno == EINPROGRESS ? 0 : -1;
}

int park_owns(int fd)
{
    return fd >= 0 && (fd == __atomic_load_n(&listener, __ATOMIC_RELAXED) || fd == __atomic_load_n(&filler, __ATOMIC_RELAXED));
}
