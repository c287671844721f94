/* paths.c: the bytes of a direct connection at its close, from the kernel's TCP_INFO, handed to
 * the engine to report (see paths.h). <linux/tcp.h> is the one with tcpi_bytes_acked and
 * tcpi_bytes_received (glibc's <netinet/tcp.h> stops before them), so this file has it alone. */
#include "uvpn/core/paths.h"
#include "common/real.h"
#include "uvpn/core/engine.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

void paths_closing(int fd, const vinfo *v)
{
    if (v->kind != VS_CONNECTED || !v->direct || v->owner != getpid()) return;
    struct tcp_info ti;
    socklen_t l = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) != 0) return;
    /* A kernel older than 4.1/4.6 fills in less: those counts stay 0. */
    eng_report_direct(ti.tcpi_bytes_acked, ti.tcpi_bytes_received);
}

void paths_forgotten(const vinfo *v)
{
    if (v->kind == VS_CONNECTED && v->direct && v->owner == getpid()) eng_report_direct(0, 0);
}
