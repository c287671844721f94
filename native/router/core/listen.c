/* listen.c: the listeners of the router's subnet as the data plane knows them (CMD_LISTENER,
 * installed by the control plane whenever its table changes: router/leases.ts), so that a peer
 * router's OPEN for one of them is answered here, dialed at once, without a round trip through
 * the control plane (docs/BENCHMARKS.md, "Across two routers"). A destination not in this table
 * still goes to the control plane (EV_OPEN_REQ), which answers or refuses it with its reason. */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <stdlib.h>
#include <string.h>

static uint64_t key_of(uint32_t ip, uint16_t port) { return (uint64_t)ip << 16 | port; }

/* CMD_LISTENER: ip u32, port u16, real_port u16, lid[8], host (text; none: the entry goes). */
void listener_set(dp *d, const uint8_t *p, size_t n)
{
    if (n < 16) return;
    uint64_t k = key_of(get32(p), get16(p + 4));
    size_t hl = n - 16;
    if (hl == 0 || hl >= sizeof ((dp_listener *)0)->host) {
        free(map_del(&d->listeners, k));
        return;
    }
    dp_listener *l = map_get(&d->listeners, k);
    if (!l) {
        l = malloc(sizeof *l);
        if (!l) return;
        if (map_put(&d->listeners, k, l) != 0) {
            free(l);
            return;
        }
    }
    l->real_port = get16(p + 6);
    memcpy(l->lid, p + 8, UVPN_LID_LEN);
    memcpy(l->host, p + 16, hl);
    l->host[hl] = 0;
}

const dp_listener *listener_find(dp *d, uint32_t ip, uint16_t port)
{
    return map_get(&d->listeners, key_of(ip, port));
}

void listeners_free(dp *d)
{
    for (size_t i = 0; i < d->listeners.cap; i++)
        if (d->listeners.vals && d->listeners.vals[i]) free(d->listeners.vals[i]);
    map_free(&d->listeners);
}
