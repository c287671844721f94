/* api.c: libuvpnrouter.so's FFI entry points, called by the router's control plane through
 * ffi/librouter.ts (one data plane per process). Everything but uvpn_dp_wait returns at once:
 * commands are queued for the data-plane thread, events are copied out of its queue, the
 * counters are read with atomic loads. uvpn_dp_wait blocks until an event is queued (Deno runs
 * it on its blocking pool: one call at a time, never one per connection). */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define UVPN_DP_ABI 2

static dp D = {.qlock = PTHREAD_MUTEX_INITIALIZER, .qcond = PTHREAD_COND_INITIALIZER};
static int started;

EXPORT int uvpn_dp_abi(void) { return UVPN_DP_ABI; }

/* Configuration: key[32], window u32, memory_limit u64, spool_limit u64, spool_total u64,
 * dead_ms u32, keepalive_ms u32, dial_ms u32, outage_ms u32, bdp_max u32, encrypt u8, then the
 * spool directory (the rest). */
EXPORT int uvpn_dp_start(const uint8_t *p, uint32_t n)
{
    if (started) return -EALREADY;
    if (n < 32 + 4 + 8 * 3 + 4 * 5 + 1) return -EINVAL;
    dp_config *c = &D.cfg;
    memcpy(c->key, p, 32);
    c->window = get32(p + 32);
    c->memory_limit = sf_get64(p + 36);
    c->spool_limit = sf_get64(p + 44);
    c->spool_total = sf_get64(p + 52);
    c->dead_ms = get32(p + 60);
    c->keepalive_ms = get32(p + 64);
    c->dial_ms = get32(p + 68);
    c->outage_ms = get32(p + 72);
    c->bdp_max = get32(p + 76);
    c->encrypt = p[80];
    size_t dl = n - 81 < sizeof c->spool_dir - 1 ? n - 81 : sizeof c->spool_dir - 1;
    memcpy(c->spool_dir, p + 81, dl);
    c->spool_dir[dl] = 0;
    dp_adopt_init(&D);
    int r = dp_init(&D);
    if (r == 0) r = dp_start(&D);
    if (r == 0) started = 1;
    return r;
}

EXPORT int uvpn_dp_cmd(const uint8_t *p, uint32_t n)
{
    if (!started || n < 1) return -EINVAL;
    return dp_post(&D, p, n);
}

EXPORT int uvpn_dp_adopt(const uint8_t *p, uint32_t n)
{
    if (!started) return -EINVAL;
    return dp_adopt_fd(&D, p, n);
}

/* The data port (router/core/data.c): port u16 (0: any), per_source u32, total u32,
 * handshake_ms u32, ticket_ms u32, then the host to bind (text, a numeric address). Opens its
 * socket here and hands it to the data-plane thread: the port bound, or -errno. */
EXPORT int uvpn_dp_data_listen(const uint8_t *p, uint32_t n)
{
    if (!started || n < 19 || n - 18 > 63) return -EINVAL;
    char host[64];
    memcpy(host, p + 18, n - 18);
    host[n - 18] = 0;
    uint16_t port;
    int fd = data_open(host, get16(p), &port);
    if (fd < 0) return fd;
    uint8_t c[21];
    c[0] = CMD_DATA_LISTEN;
    put32(c + 1, (uint32_t)fd);
    memcpy(c + 5, p + 2, 16);
    int r = dp_post(&D, c, sizeof c);
    if (r) {
        close(fd);
        return r;
    }
    return port;
}

EXPORT int uvpn_dp_wait(void)
{
    pthread_mutex_lock(&D.qlock);
    while (D.ev_len == 0 && !D.stopped) pthread_cond_wait(&D.qcond, &D.qlock);
    int r = D.ev_len > 0 ? 1 : 0;
    pthread_mutex_unlock(&D.qlock);
    return r;
}

/* Copies whole event records (u32 length, type, payload) into buf: the bytes copied. */
EXPORT int uvpn_dp_events(uint8_t *buf, uint32_t cap)
{
    return (int)dp_take_events(&D, buf, cap);
}

/* The counters, u64 big-endian each, in this order. */
EXPORT int uvpn_dp_stats(uint8_t *buf, uint32_t cap)
{
    dp_counters *c = &D.n;
    uint64_t *v[] = {
        &c->sent, &c->received, &c->local_up, &c->local_down, &c->sessions_total, &c->sessions_clean,
        &c->sessions_reset, &c->sessions_live, &c->relays_total, &c->relays_live, &c->links_up,
        &c->link_losses, &c->resumes, &c->replayed, &c->frames_in, &c->frames_out, &c->refused_mac,
        &c->refused_seq, &c->refused_frame, &c->refused_protocol, &c->ignored_unknown,
        &D.mem.used, &D.mem.peak, &D.cfg.memory_limit, &D.spool.used, &D.spool.peak, &D.cfg.spool_total,
        &D.spool.total,
    };
    size_t k = sizeof v / sizeof *v;
    if (cap < k * 8) return -ENOSPC;
    for (size_t i = 0; i < k; i++) sf_put64(buf + 8 * i, __atomic_load_n(v[i], __ATOMIC_RELAXED));
    return (int)(k * 8);
}

/* The AES-GCM implementation in use, NUL-terminated into buf. */
EXPORT int uvpn_dp_info(char *buf, uint32_t cap)
{
    return snprintf(buf, cap, "%s", uvpn_gcm_impl());
}

EXPORT void uvpn_dp_stop(void)
{
    if (!started) return;
    uint8_t cmd = CMD_SHUTDOWN;
    uvpn_dp_cmd(&cmd, 1);
}
