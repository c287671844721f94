/* park_race.c: how often a program's poller sees a pending overlay connect look closed. The
 * socket waits in SYN_SENT towards a holding listener whose accept queue is full (as
 * native/uvpn/core/park.c parks it), while a poller thread polls it for POLLOUT, asleep in
 * poll() or polling in a loop; then the socket goes on to a real listener in one of three ways:
 *   abandon  connect(AF_UNSPEC), getsockopt(SO_ERROR), connect: the engine's move (eng_abandon);
 *   direct   connect(AF_UNSPEC), connect, nothing between: the shortest move there is;
 *   simopen  no move: a SO_REUSEPORT socket bound to the holding port connects to the pending
 *            socket's address (TCP simultaneous open), so the pending connect itself completes.
 * A sighting is a poll() that returns POLLHUP or POLLERR before the socket is established (the
 * instant between the two connects, in TCP_CLOSE). Built and run by scripts/bench/park_race.sh.
 *   park_race MOVES   -> one line per way and poller: "WAY POLLER sightings MOVES" */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ABANDON, DIRECT, SIMOPEN, N_WAYS };
static const char *const WAYS[N_WAYS] = {"abandon", "direct", "simopen"};

static atomic_int watched = -1, gen, done, stop, sightings, busy;

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

static void die(const char *what)
{
    fprintf(stderr, "park_race: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A listener on 127.0.0.1 (SO_REUSEPORT, so that simopen may bind its port too): fd, *port. */
static int listener(int backlog, uint16_t *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = loopback(0);
    socklen_t l = sizeof a;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) || bind(s, (struct sockaddr *)&a, sizeof a) ||
        listen(s, backlog) || getsockname(s, (struct sockaddr *)&a, &l))
        die("listener");
    *port = ntohs(a.sin_port);
    return s;
}

/* The program's poller: polls the watched socket for POLLOUT until it is done, counting a
 * POLLHUP/POLLERR seen while the socket of the same generation is still pending. */
static void *poller(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        int g = atomic_load(&gen), fd = atomic_load(&watched);
        if (fd < 0 || atomic_load(&done)) {
            if (!busy) usleep(50);
            continue;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int r = poll(&p, 1, busy ? 0 : 5);
        if (r > 0 && (p.revents & (POLLHUP | POLLERR)) && !atomic_load(&done) && atomic_load(&gen) == g) {
            atomic_fetch_add(&sightings, 1);
            atomic_store(&done, 1);
        }
    }
    return NULL;
}

/* Completes the pending socket s towards real (or, simopen, from the holding port). */
static int go_on(int way, int s, const struct sockaddr_in *held, const struct sockaddr_in *real)
{
    if (way == SIMOPEN) {
        int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        if (t < 0 || setsockopt(t, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) || bind(t, (const struct sockaddr *)held, sizeof *held) ||
            getsockname(s, (struct sockaddr *)&me, &ml))
            die("simultaneous open");
        if (connect(t, (struct sockaddr *)&me, sizeof me) && errno != EINPROGRESS) die("simultaneous open: connect");
        return t;
    }
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    int e;
    socklen_t el = sizeof e;
    connect(s, &unspec, sizeof unspec);
    if (way == ABANDON) getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
    if (connect(s, (const struct sockaddr *)real, sizeof *real) && errno != EINPROGRESS) die("connect to the real listener");
    return -1;
}

/* One way, MOVES times: sightings. */
static int run(int way, int moves, const struct sockaddr_in *held, int real_fd, const struct sockaddr_in *real)
{
    atomic_store(&sightings, 0);
    for (int i = 0; i < moves; i++) {
        atomic_fetch_add(&gen, 1);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (s < 0) die("socket");
        if (connect(s, (const struct sockaddr *)held, sizeof *held) == 0 || errno != EINPROGRESS) die("parking");
        atomic_store(&done, 0);
        atomic_store(&watched, s);
        atomic_fetch_add(&gen, 1);
        usleep(200 + (unsigned)(rand() % 300)); /* the router's answer: the poller waits meanwhile */
        int t = go_on(way, s, held, real);
        struct pollfd p = {s, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, 1000) != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
            fprintf(stderr, "park_race: %s: not connected (revents %#x, SO_ERROR %d)\n", WAYS[way], p.revents, err);
            exit(1);
        }
        usleep(100); /* a poller that saw only the established socket has looked */
        atomic_store(&done, 1);
        atomic_store(&watched, -1);
        atomic_fetch_add(&gen, 1);
        if (t >= 0) close(t);
        else if ((t = accept(real_fd, NULL, NULL)) >= 0) close(t);
        close(s);
    }
    return atomic_load(&sightings);
}

int main(int argc, char **argv)
{
    int moves = argc > 1 ? atoi(argv[1]) : 2000;
    uint16_t hp, rp;
    listener(0, &hp); /* the holding listener: never accepts */
    struct sockaddr_in held = loopback(hp);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    if (filler < 0 || connect(filler, (struct sockaddr *)&held, sizeof held)) die("filling the holding listener");
    usleep(20000);
    int real_fd = listener(4096, &rp);
    struct sockaddr_in real = loopback(rp);
    for (int b = 0; b < 2; b++) {
        atomic_store(&busy, b);
        atomic_store(&stop, 0);
        pthread_t t;
        if (pthread_create(&t, NULL, poller, NULL)) die("pthread_create");
        for (int w = 0; w < N_WAYS; w++)
            printf("%s %s %d %d\n", WAYS[w], b ? "busy" : "asleep", run(w, moves, &held, real_fd, &real), moves);
        atomic_store(&stop, 1);
        pthread_join(t, NULL);
    }
    return 0;
}
