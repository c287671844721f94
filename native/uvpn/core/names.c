/* names.c: overlay host names asked of the home router (see names.h). */
#include "uvpn/core/names.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/engine.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define NAME_TIMEOUT_MS 5000
#define SELF_RETRY_MS 5000 /* a virtual address without a name is asked again after this */

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

/* Is host (n bytes) this machine's own name (gethostname, or its first label)? */
static int is_own_hostname(const char *host, size_t n)
{
    char hn[256];
    if (gethostname(hn, sizeof hn)) return 0;
    hn[sizeof hn - 1] = 0;
    const char *dot = strchr(hn, '.');
    size_t hl = strlen(hn), sl = dot ? (size_t)(dot - hn) : hl;
    return n && ((n == hl && strncasecmp(host, hn, n) == 0) || (n == sl && strncasecmp(host, hn, n) == 0));
}

/* The machine's own host name, for a program with a virtual address that has an overlay name
 * (uvpn_register --name): its virtual address, so that gethostname-based lookups (hostname -i,
 * MPI and batch daemons finding their own address) give the overlay's. The name is asked once
 * (a lease keeps its name), its absence again after SELF_RETRY_MS. */
static int self_lookup(const char *host, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int known;
    static int64_t unnamed_at = -1;
    static char name[UVPN_NAME_MAX + 1];
    const struct cfg *c = cfg();
    if (!c->have_src || !is_own_hostname(host, n)) return NM_NOT_OVERLAY;
    pthread_mutex_lock(&lock);
    int k = known, retry = unnamed_at < 0 || mono_ms() - unnamed_at >= SELF_RETRY_MS;
    if (k) memcpy(canon, name, sizeof name);
    pthread_mutex_unlock(&lock);
    if (!k && !retry) return NM_NOT_OVERLAY;
    if (!k) {
        uint32_t src = c->src;
        char got[UVPN_NAME_MAX + 1];
        int r = ask(NULL, 0, &src, got);
        pthread_mutex_lock(&lock);
        if (r == NM_FOUND) memcpy(name, got, sizeof got), known = 1;
        else unnamed_at = mono_ms();
        pthread_mutex_unlock(&lock);
        if (r != NM_FOUND) return NM_NOT_OVERLAY;
        memcpy(canon, got, sizeof got);
    }
    *ip = c->src;
    return NM_FOUND;
}

int nm_lookup(const char *host, size_t n, uint32_t *ip, char canon[UVPN_NAME_MAX + 1])
{
    if (!host || !cfg()->have_proxy) return NM_NOT_OVERLAY;
    if (n && host[n - 1] == '.') n--; /* a fully qualified "NAME.uvpn." */
    if (self_lookup(host, n, ip, canon) == NM_FOUND) return NM_FOUND;
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
