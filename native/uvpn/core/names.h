/* names.h: asking the home router about overlay host names (NAME frame, docs/PROTOCOL.md), the
 * rules shared by libuvpn.so's resolver wrappers (resolve.c) and the supervisor's DNS stub
 * (dnsstub.c): NAME.uvpn (any case, a trailing dot allowed) is only ever asked of the home
 * router; a bare NAME (no dot, not numeric, not "localhost") is asked of it first and left to the
 * real resolver when the overlay does not know it; anything else is not the overlay's. */
#ifndef UVPN_NAMES_H
#define UVPN_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

#define NM_SUFFIX ".uvpn"

enum { NM_NOT_OVERLAY = 0, NM_FOUND = 1, NM_UNKNOWN = -1, NM_DOWN = -2 };

/* Is host (n bytes, not necessarily NUL-terminated) an overlay name, and which address?
 * NM_FOUND with *ip (host order) and canon (the name as registered); NM_UNKNOWN (a NAME.uvpn the
 * overlay does not know); NM_DOWN (home router unreachable, for NAME.uvpn); NM_NOT_OVERLAY:
 * leave it to the real resolver. The machine's own host name (gethostname) is the program's
 * virtual address when that address has an overlay name. */
int nm_lookup(const char *host, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1]);

/* Reverse lookup of ip (host order): NM_NOT_OVERLAY when it is not a virtual address, else
 * NM_FOUND with name, NM_UNKNOWN (no name) or NM_DOWN. */
int nm_lookup_addr(uint32_t ip, char name[UVPN_NAME_MAX + 1]);

#endif
