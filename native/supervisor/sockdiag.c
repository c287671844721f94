/* sockdiag.c: TCP and UDP socket inodes from NETLINK_SOCK_DIAG (see sockdiag.h). */
#include "supervisor/sockdiag.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_ino(const void *a, const void *b)
{
    ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends the inodes of one family's sockets of protocol proto to *v (size *n, capacity *cap).
 * 0 or -errno. */
static int dump(int nl, int family, int proto, ino_t **v, long *n, long *cap)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = (uint8_t)family;
    req.r.sdiag_protocol = (uint8_t)proto;
    req.r.idiag_states = ~0u; /* every state, bound-inactive included where the kernel knows it */
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(nl, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -errno;
    long buf[8192 / sizeof(long)]; /* netlink messages, aligned */
    for (;;) {
        ssize_t got = recv(nl, buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (got == 0) return -EPROTO;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE) return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                return e->error ? e->error : -EPROTO;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
            struct inet_diag_msg *m = NLMSG_DATA(h);
            if (*n == *cap) {
                long nc = *cap ? *cap * 2 : 256;
                ino_t *nv = realloc(*v, (size_t)nc * sizeof **v);
                if (!nv) return -ENOMEM;
                *v = nv;
                *cap = nc;
            }
            (*v)[(*n)++] = m->idiag_inode;
        }
    }
}

long sd_inodes(ino_t **out)
{
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -errno;
    ino_t *v = NULL;
    long n = 0, cap = 0;
    int r = 0;
    static const int protos[] = {IPPROTO_TCP, IPPROTO_UDP}, families[] = {AF_INET, AF_INET6};
    for (int p = 0; p < 2 && r == 0; p++)
        for (int f = 0; f < 2 && r == 0; f++) r = dump(nl, families[f], protos[p], &v, &n, &cap);
    close(nl);
    if (r) {
        free(v);
        return r;
    }
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_ino);
    *out = v;
    return n;
}

int sd_contains(const ino_t *inos, long n, ino_t ino)
{
    return n > 0 && bsearch(&ino, inos, (size_t)n, sizeof ino, cmp_ino) != NULL;
}

static int lists_bound;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct stat sb;
    ino_t *v = NULL;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 && fstat(s, &sb) == 0) {
        long n = sd_inodes(&v);
        lists_bound = n > 0 && sd_contains(v, n, sb.st_ino);
        free(v);
    }
    if (s >= 0) close(s);
}

int sd_lists_bound(void)
{
    pthread_once(&probe_once, probe);
    return lists_bound;
}
