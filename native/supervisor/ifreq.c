/* ifreq.c: the supervisor's answer to interface ioctls (calls.h): the filter stops ioctl only
 * for the requests of uvpn/core/ifaces.h; the answers come from the same view as libuvpn.so's
 * (uvpn0 with the virtual address, then loopback; real interfaces with UVPN_REAL_IFACES=1),
 * read from and written into the program's memory. Anything else about a real interface
 * continues in the kernel. */
#include "supervisor/calls.h"
#include "supervisor/target.h"
#include "uvpn/core/ifaces.h"

#include <errno.h>
#include <net/if.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define IFCONF_MAX 256 /* entries answered at most */

/* SIOCGIFCONF into the program's struct ifconf at addr (real entries from the duplicate fd). */
static int ifconf(pid_t pid, int fd, const ifv_view *v, uint64_t addr)
{
    struct ifconf ifc;
    int e = tg_read(pid, addr, &ifc, sizeof ifc);
    if (e) return e;
    int sz = (int)sizeof(struct ifreq), ours = ifv_ifconf(v, NULL, 0);
    struct ifconf sub = {0, {NULL}};
    if (!ifc.ifc_buf) {
        if (v->real && ioctl(fd, SIOCGIFCONF, &sub) < 0) return -errno;
        ifc.ifc_len = ours * sz + sub.ifc_len;
        return tg_write(pid, addr + offsetof(struct ifconf, ifc_len), &ifc.ifc_len, sizeof ifc.ifc_len);
    }
    int cap = ifc.ifc_len > 0 ? ifc.ifc_len / sz : 0;
    if (cap > IFCONF_MAX) cap = IFCONF_MAX;
    struct ifreq *tmp = calloc((size_t)cap + 1, sizeof *tmp);
    if (!tmp) return -ENOMEM;
    int k = ifv_ifconf(v, tmp, cap), used = k < cap ? k : cap;
    if (v->real && cap > used) {
        sub.ifc_len = (cap - used) * sz;
        sub.ifc_req = tmp + used;
        if (ioctl(fd, SIOCGIFCONF, &sub) < 0) sub.ifc_len = 0; /* ours alone, then */
    }
    int len = used * sz + sub.ifc_len;
    e = len ? tg_write(pid, (uint64_t)(uintptr_t)ifc.ifc_buf, tmp, (size_t)len) : 0;
    free(tmp);
    if (e) return e;
    return tg_write(pid, addr + offsetof(struct ifconf, ifc_len), &len, sizeof len);
}

void on_ioctl(int nfd, const struct seccomp_notif *q)
{
    pid_t pid = (pid_t)q->pid;
    unsigned long req = q->data.args[1] & 0xffffffffu;
    uint64_t arg = q->data.args[2];
    ifv_view v;
    struct stat sb;
    int fd = arg && ifv_get(&v) ? tg_getfd(pid, (int)q->data.args[0]) : -1;
    if (fd < 0 || fstat(fd, &sb) || !S_ISSOCK(sb.st_mode)) {
        if (fd >= 0) close(fd);
        tg_continue(nfd, q->id);
        return;
    }
    int r;
    struct ifreq ifr;
    if (req == SIOCGIFCONF) {
        r = ifconf(pid, fd, &v, arg);
    } else if ((r = tg_read(pid, arg, &ifr, sizeof ifr)) == 0) {
        r = ifv_ifreq(&v, req, &ifr);
        if (r == 0) {
            close(fd);
            tg_continue(nfd, q->id);
            return;
        }
        if (r > 0) r = tg_write(pid, arg, &ifr, sizeof ifr);
    }
    close(fd);
    if (tg_valid(nfd, q->id)) tg_reply(nfd, q->id, r < 0 ? -1 : 0, r < 0 ? -r : 0);
}
