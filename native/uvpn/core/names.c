/* names.c: overlay host names asked of the home router (see names.h). */
#include "uvpn/core/names.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/engine.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#define NAME_TIMEOUT_MS 5000

/* Sends a NAME query (name != NULL: forward; else reverse of ip). NM_FOUND with *ip / canon
 * (the name as registered), NM_UNKNOWN, or NM_DOWN (home router unreachable). */
static int ask(const char *name, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    uint8_t body[3 + UVPN_NAME_MAX], data[5 + UVPN_NAME_MAX];
    long bl = uvpn_name_pack(body, 0, name, n, *ip);
    if (bl < 0) return NM_UNKNOWN;
    char why[256] = "";
    size_t dl = 0;
    int timeout = cfg()->timeout_ms < NAME_TIMEOUT_MS ? cfg()->timeout_ms : NAME_TIMEOUT_MS;
    int st = ov_control(UVPN_T_NAME, body, (size_t)bl, data, sizeof data, &dl, timeout, why,
                        sizeof why);
    char a[16];
    const char *what = name ? name : ip_str(*ip, a);
    if (st == UVPN_ST_OK && uvpn_name_answer(data, dl, ip, canon) == 0) {
        dbg("name %s: %s %s", what, name ? "is" : "is named", name ? ip_str(*ip, a) : canon);
        return NM_FOUND;
    }
    if (st == UVPN_ST_ENOENT || st > 0) {
        dbg("name %s: not in the overlay", what);
        return NM_UNKNOWN;
    }
    dbg("name %s: %s", what, why);
    return NM_DOWN;
}

int nm_lookup(const char *host, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    if (!host || !cfg()->have_proxy) return NM_NOT_OVERLAY;
    if (n && host[n - 1] == '.') n--; /* a fully qualified "NAME.uvpn." */
    size_t sl = strlen(NM_SUFFIX);
    int suffixed = n > sl && strncasecmp(host + n - sl, NM_SUFFIX, sl) == 0;
    if (suffixed) n -= sl;
    if (!uvpn_name_valid(host, n)) return NM_NOT_OVERLAY; /* dotted, numeric-looking with dots... */
    struct in_addr a;
    char tmp[UVPN_NAME_MAX + 1];
    memcpy(tmp, host, n);
    tmp[n] = 0;
    if (!suffixed && (strcasecmp(tmp, "localhost") == 0 || inet_aton(tmp, &a))) return NM_NOT_OVERLAY;
    int r = ask(tmp, n, ip, canon);
    if (r == NM_FOUND) return r;
    return suffixed ? r : NM_NOT_OVERLAY; /* a bare name the overlay does not know: real DNS */
}

int nm_lookup_addr(uint32_t ip, char name[UVPN_NAME_MAX + 1])
{
    if (!cfg()->have_proxy || !cfg_is_virtual(ip)) return NM_NOT_OVERLAY;
    return ask(NULL, 0, &ip, name);
}
