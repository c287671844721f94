/* ifaddrs.c: interface enumeration in libuvpn.so (docs/UVPN.md, "Interfaces"): the wrappers of
 * getifaddrs and freeifaddrs, ioctl (the interface requests only: SIOCGIFCONF, SIOCGIF*,
 * SIOCETHTOOL, SIOCSIF*), if_nametoindex, if_indextoname, if_nameindex, and opendir, readdir,
 * readdir64 and closedir of /sys/class/net (UCX lists its TCP devices there). glibc's own
 * getifaddrs and if_* functions talk to the kernel with internal calls that no wrapper sees, so
 * each is wrapped itself; programs that speak rtnetlink directly are answered in netlink.c.
 * What they show comes from the shared view (uvpn/core/ifaces.h): uvpn0 with the virtual
 * address first, then loopback; real interfaces only with UVPN_REAL_IFACES=1. */
#include "uvpn/wrap/wrap.h"
#include "uvpn/core/ifaces.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

/* NEED for the wrappers that return a pointer. */
#define NEED_PTR(fn)        \
    do {                    \
        real_init();        \
        if (!real.fn) {     \
            errno = ENOSYS; \
            return NULL;    \
        }                   \
    } while (0)

/* The view, computed "inside" (it may ask the home router for INFO). 0: no overlay identity. */
static int view(ifv_view *v)
{
    if (inside) return 0;
    int saved = errno;
    inside = 1;
    int r = ifv_get(v);
    inside = 0;
    errno = saved;
    return r;
}

/* ---- getifaddrs ---------------------------------------------------------------------------- */

struct node {
    struct ifaddrs ifa;
    struct sockaddr_storage addr, mask, brd;
    char name[IFNAMSIZ];
};

/* One answer of getifaddrs: our nodes, then (UVPN_REAL_IFACES=1) the real list. */
struct block {
    struct block *next;
    struct ifaddrs *real_head;
    struct node nodes[2 * IFV_MAX];
};

static struct block *blocks; /* live answers, for freeifaddrs */
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

static struct sockaddr *in4(struct sockaddr_storage *ss, uint32_t ip)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    s->sin_addr.s_addr = htonl(ip);
    return (struct sockaddr *)ss;
}

static struct sockaddr *in6(struct sockaddr_storage *ss, int loopback)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    if (loopback) s->sin6_addr = in6addr_loopback;
    else memset(&s->sin6_addr, 0xff, sizeof s->sin6_addr); /* the /128 mask */
    return (struct sockaddr *)ss;
}

EXPORT int getifaddrs(struct ifaddrs **out)
{
    real_init();
    ifv_view v;
    if (!view(&v)) return real.getifaddrs ? real.getifaddrs(out) : (errno = ENOSYS, -1);
    struct block *b = calloc(1, sizeof *b);
    if (!b) return -1;
    int k = 0;
    for (int pass = 0; pass < 2; pass++) /* IPv4 entries first, then loopback's ::1 */
        for (int i = 0; i < v.n; i++) {
            const ifv_link *l = &v.l[i];
            if (pass && !l->loopback) continue;
            struct node *nd = &b->nodes[k++];
            memcpy(nd->name, l->name, sizeof nd->name);
            nd->ifa.ifa_name = nd->name;
            nd->ifa.ifa_flags = l->flags;
            nd->ifa.ifa_addr = pass ? in6(&nd->addr, 1) : in4(&nd->addr, l->addr);
            nd->ifa.ifa_netmask = pass ? in6(&nd->mask, 0) : in4(&nd->mask, l->mask);
        }
    for (int i = 0; i + 1 < k; i++) b->nodes[i].ifa.ifa_next = &b->nodes[i + 1].ifa;
    if (v.real && real.getifaddrs && real.getifaddrs(&b->real_head) == 0)
        b->nodes[k - 1].ifa.ifa_next = b->real_head;
    pthread_mutex_lock(&blocks_lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&blocks_lock);
    *out = &b->nodes[0].ifa;
    return 0;
}

EXPORT void freeifaddrs(struct ifaddrs *ifa)
{
    real_init();
    struct block *found = NULL;
    pthread_mutex_lock(&blocks_lock);
    for (struct block **p = &blocks; *p; p = &(*p)->next)
        if (&(*p)->nodes[0].ifa == ifa) {
            found = *p;
            *p = found->next;
            break;
        }
    pthread_mutex_unlock(&blocks_lock);
    if (!found) {
        if (real.freeifaddrs) real.freeifaddrs(ifa);
        return;
    }
    if (found->real_head && real.freeifaddrs) real.freeifaddrs(found->real_head);
    free(found);
}

/* ---- if_nametoindex, if_indextoname, if_nameindex ---------------------------------------- */

EXPORT unsigned int if_nametoindex(const char *name)
{
    real_init();
    ifv_view v;
    if (!name || !view(&v)) return real.if_nametoindex ? real.if_nametoindex(name) : 0;
    const ifv_link *l = ifv_by_name(&v, name);
    if (l) return (unsigned)l->index;
    if (v.real && real.if_nametoindex) return real.if_nametoindex(name);
    errno = ENODEV;
    return 0;
}

EXPORT char *if_indextoname(unsigned int index, char name[IF_NAMESIZE])
{
    real_init();
    ifv_view v;
    if (!view(&v)) return real.if_indextoname ? real.if_indextoname(index, name) : NULL;
    const ifv_link *l = ifv_by_index(&v, (int)index);
    if (l) return strncpy(name, l->name, IFNAMSIZ);
    if (v.real && real.if_indextoname) return real.if_indextoname(index, name);
    errno = ENXIO;
    return NULL;
}

/* Laid out as glibc's (an array and one malloc'd name each), so its if_freenameindex frees it. */
EXPORT struct if_nameindex *if_nameindex(void)
{
    real_init();
    ifv_view v;
    if (!view(&v)) return real.if_nameindex ? real.if_nameindex() : NULL;
    struct if_nameindex *r = v.real && real.if_nameindex ? real.if_nameindex() : NULL;
    size_t nr = 0;
    while (r && (r[nr].if_index || r[nr].if_name)) nr++;
    struct if_nameindex *a = calloc((size_t)v.n + nr + 1, sizeof *a);
    if (!a) {
        if (r) if_freenameindex(r);
        return NULL;
    }
    int k = 0;
    for (int i = 0; i < v.n; i++) {
        a[k].if_index = (unsigned)v.l[i].index;
        if ((a[k].if_name = strdup(v.l[i].name))) k++;
    }
    if (r) memcpy(a + k, r, nr * sizeof *r); /* the real names move over */
    free(r);
    return a;
}

/* ---- ioctl --------------------------------------------------------------------------------- */

static int is_socket(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode);
}

static int ifconf(int fd, const ifv_view *v, struct ifconf *ifc)
{
    int ours = ifv_ifconf(v, NULL, 0);
    int sz = (int)sizeof(struct ifreq);
    struct ifconf sub = {0, {NULL}};
    if (!ifc->ifc_buf) { /* the size of the whole list */
        if (v->real && real.ioctl(fd, SIOCGIFCONF, &sub) < 0) return -1;
        ifc->ifc_len = ours * sz + sub.ifc_len;
        return 0;
    }
    int cap = ifc->ifc_len / sz;
    int k = ifv_ifconf(v, ifc->ifc_req, cap);
    int used = k < cap ? k : cap;
    if (v->real && cap > used) {
        sub.ifc_len = (cap - used) * sz;
        sub.ifc_req = ifc->ifc_req + used;
        if (real.ioctl(fd, SIOCGIFCONF, &sub) < 0) return -1;
    }
    ifc->ifc_len = used * sz + sub.ifc_len;
    return 0;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    NEED(ioctl);
    ifv_view v;
    if (inside || !ifv_is_ioctl(req) || !arg || !view(&v) || !is_socket(fd)) return real.ioctl(fd, req, arg);
    if ((req & 0xffffffffu) == SIOCGIFCONF) return ifconf(fd, &v, arg);
    int r = ifv_ifreq(&v, req, arg);
    if (r == 0) return real.ioctl(fd, req, arg);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return 0;
}

/* ---- /sys/class/net ------------------------------------------------------------------------ */

#define DIRS_MAX 16

/* Open listings of /sys/class/net: uvpn0 comes first, then the real entries (hidden ones
 * skipped). */
static struct {
    DIR *d;
    int given, real;
    struct dirent e;
    struct dirent64 e64;
} dirs[DIRS_MAX];
static atomic_int n_dirs;
static pthread_mutex_t dirs_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_sys_net(const char *p)
{
    return p && (strcmp(p, "/sys/class/net") == 0 || strcmp(p, "/sys/class/net/") == 0);
}

EXPORT DIR *opendir(const char *name)
{
    real_init();
    if (!real.opendir) return errno = ENOSYS, NULL;
    DIR *d = real.opendir(name);
    ifv_view v;
    if (!d || !is_sys_net(name) || !view(&v)) return d;
    pthread_mutex_lock(&dirs_lock);
    for (int i = 0; i < DIRS_MAX; i++)
        if (!dirs[i].d) {
            memset(&dirs[i], 0, sizeof dirs[i]);
            dirs[i].d = d;
            dirs[i].real = v.real;
            atomic_fetch_add(&n_dirs, 1);
            break;
        }
    pthread_mutex_unlock(&dirs_lock);
    return d;
}

#define FILL(x)                                              \
    do {                                                     \
        memset(&(x), 0, sizeof(x));                          \
        (x).d_ino = IFV_INDEX;                               \
        (x).d_reclen = sizeof(x);                            \
        (x).d_type = DT_LNK;                                 \
        memcpy((x).d_name, IFV_NAME, sizeof IFV_NAME);       \
    } while (0)

/* For a tracked listing: the synthetic entry first (*synth set), else whether the real entry
 * name must be skipped. -1: d is not tracked. */
static int listing(DIR *d, const char *name, void **synth, int is64)
{
    if (atomic_load_explicit(&n_dirs, memory_order_relaxed) == 0) return -1;
    int r = -1;
    pthread_mutex_lock(&dirs_lock);
    for (int i = 0; i < DIRS_MAX; i++) {
        if (dirs[i].d != d) continue;
        r = 0;
        if (!dirs[i].given && synth) {
            dirs[i].given = 1;
            if (is64) {
                FILL(dirs[i].e64);
                *synth = &dirs[i].e64;
            } else {
                FILL(dirs[i].e);
                *synth = &dirs[i].e;
            }
        } else if (name && !dirs[i].real) {
            r = strcmp(name, ".") && strcmp(name, "..") && strcmp(name, "lo");
        }
        break;
    }
    pthread_mutex_unlock(&dirs_lock);
    return r;
}

/* readdir and readdir64: the same walk over their own entry types. */
#define READDIR(fn, type, is64)                                                        \
    EXPORT struct type *fn(DIR *d)                                                     \
    {                                                                                  \
        NEED_PTR(fn);                                                                  \
        void *s = NULL;                                                                \
        if (listing(d, NULL, &s, is64) < 0) return real.fn(d);                         \
        if (s) return s;                                                               \
        struct type *e;                                                                \
        while ((e = real.fn(d)) && listing(d, e->d_name, NULL, is64) == 1) {}          \
        return e;                                                                      \
    }

READDIR(readdir, dirent, 0)
READDIR(readdir64, dirent64, 1)

EXPORT int closedir(DIR *d)
{
    NEED(closedir);
    if (atomic_load_explicit(&n_dirs, memory_order_relaxed)) {
        pthread_mutex_lock(&dirs_lock);
        for (int i = 0; i < DIRS_MAX; i++)
            if (dirs[i].d == d) {
                dirs[i].d = NULL;
                atomic_fetch_sub(&n_dirs, 1);
            }
        pthread_mutex_unlock(&dirs_lock);
    }
    return real.closedir(d);
}
