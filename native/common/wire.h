/* wire.h: the UVPN wire codec (docs/PROTOCOL.md, version 2): constants, frame encode/decode and
 * MAC verification, link key derivation (HKDF-SHA256), CONNECT bodies and answers, tickets and the
 * seen-set of ticket ids, status<->errno mapping, key file parsing and encapsulated datagrams.
 * Pure logic: no sockets, no environment. */
#ifndef UVPN_WIRE_H
#define UVPN_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#define UVPN_MAGIC "UVPN" /* 55 56 50 4e */
#define UVPN_TICKET_MAGIC "UVPT" /* 55 56 50 54 */
#define UVPN_MAGIC_LEN 4
#define UVPN_VERSION 2
#define UVPN_HEAD_LEN 32
#define UVPN_MAC_LEN 32
#define UVPN_NONCE_LEN 16
#define UVPN_TOKEN_LEN 16
#define UVPN_LID_LEN 8
#define UVPN_KEY_LEN 32
#define UVPN_MAX_PREAUTH_BODY 64 /* HELLO, CHALLENGE: before the link is authenticated */
#define UVPN_MAX_REQ_BODY 1024   /* every type except REPLY */
#define UVPN_MAX_BODY 65535      /* REPLY */
#define UVPN_CONNECT_BODY_LEN 14
#define UVPN_CONNECT_ANSWER_LEN 41
#define UVPN_HELLO_LEN 34
#define UVPN_CHALLENGE_LEN 32
#define UVPN_TICKET_LEN 88
#define UVPN_TIME_WINDOW_MS 300000ULL

/* Frame types (docs/PROTOCOL.md, "Requests on a client link") */
enum {
    UVPN_T_HELLO = 1,
    UVPN_T_CHALLENGE = 2,
    UVPN_T_REPLY = 3,
    UVPN_T_LEASE = 4,
    UVPN_T_RELEASE = 5,
    UVPN_T_LIST = 6,
    UVPN_T_LISTEN = 7,     /* ip, vport, real_port, listener id */
    UVPN_T_UNLISTEN = 8,   /* ip, vport, listener id */
    UVPN_T_INFO = 9,
    UVPN_T_STATUS = 10,
    UVPN_T_UDPBIND = 11,   /* ip, vport, real_port (0: unregister) */
    UVPN_T_NAME = 12,      /* overlay host name <-> virtual address (see uvpn_name_pack) */
    UVPN_T_CONNECT = 13,
    UVPN_T_USE = 14,       /* ip: this link uses the address (keeps its lease held) */
    UVPN_T_PATHS = 15,     /* direct connections that ended and their bytes (uvpn_paths) */
    UVPN_T_PING = 16,
    UVPN_T_PONG = 17,
    /* Router links (docs/PROTOCOL.md, "Sessions between routers"): link frames, MACed as
     * above; the session frames 22-25 and 29 have their own layout (router/core/frame.h). */
    UVPN_T_OPEN = 20,
    UVPN_T_OPENED = 21,
    UVPN_T_RESUME = 26,
    UVPN_T_RESUMED = 27,
    UVPN_T_MUX = 28,
};

#define UVPN_ROLE_CLIENT 1
#define UVPN_ROLE_ROUTER 2

/* Reply status codes */
enum {
    UVPN_ST_OK = 0,
    UVPN_ST_ECONNREFUSED = 1,
    UVPN_ST_ENETUNREACH = 2,
    UVPN_ST_ETIMEDOUT = 3,
    UVPN_ST_EHOSTUNREACH = 4,
    UVPN_ST_EACCES = 5,
    UVPN_ST_EADDRINUSE = 6,
    UVPN_ST_EINVAL = 7,
    UVPN_ST_EADDRNOTAVAIL = 8,
    UVPN_ST_ENOENT = 9,
    UVPN_ST_EPERM = 10,
    UVPN_ST_EBUSY = 11,
};

#define UVPN_PROTO_TCP 6
#define UVPN_PROTO_UDP 17

/* CONNECT flags: the client may connect directly (DIRECT); its direct attempt failed, relay it
 * (DIRECT_FAILED). LISTEN's optional 17th byte: the listener checks every connection's ticket,
 * so it may be reached directly (docs/PROTOCOL.md, "Connections", "Listeners"). */
#define UVPN_CF_DIRECT 1
#define UVPN_CF_DIRECT_FAILED 2
#define UVPN_LF_DIRECT 1
#define UVPN_LISTEN_LEN 17

/* Ticket kinds */
#define UVPN_TK_DATA 1
#define UVPN_TK_RELAYED 2
#define UVPN_TK_DIRECT 3

/* Decode/verify results (negative) */
enum {
    UVPN_OK = 0,
    UVPN_E_SHORT = -1,    /* buffer shorter than head / frame */
    UVPN_E_MAGIC = -2,
    UVPN_E_VERSION = -3,
    UVPN_E_TYPE = -4,
    UVPN_E_LENGTH = -5,   /* body length over the limit for its type */
    UVPN_E_MAC = -6,
    UVPN_E_BODY = -7,     /* body malformed for its type */
    UVPN_E_SPACE = -8,    /* output buffer too small */
    UVPN_E_RESERVED = -9, /* reserved bytes not zero */
    UVPN_E_SEQ = -10,     /* frame out of sequence on its link */
    UVPN_E_RANGE = -11,   /* a 64-bit count or time of 2^53 or more */
};

/* Ticket checks (negative) */
enum {
    UVPN_R_TIME = -20,    /* issued outside +-300 s */
    UVPN_R_REPLAY = -21,  /* ticket id already seen */
    UVPN_R_OLD = -22,     /* issued before the seen-set's low-water mark */
};

typedef struct {
    uint8_t type;
    uint16_t len;                     /* body length L */
    uint64_t seq;
    uint32_t reqid;
} uvpn_head;

/* CONNECT body. IPv4 addresses are host-order uint32 (10.0.0.1 == 0x0a000001). */
typedef struct {
    uint8_t proto, flags;
    uint32_t src_ip;
    uint16_t src_port;
    uint32_t dst_ip;
    uint16_t dst_port;
} uvpn_connect;

/* The answer to CONNECT (after the status byte). */
typedef struct {
    uint8_t kind;
    uint32_t real_ip;
    uint16_t real_port, src_port;
    uint8_t lid[UVPN_LID_LEN];
    uint64_t issued;
    uint8_t tid[UVPN_NONCE_LEN];
} uvpn_answer;

/* A ticket's fields. */
typedef struct {
    uint8_t kind;
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint8_t lid[UVPN_LID_LEN];
    uint16_t bound_port;
    uint64_t issued;
    uint8_t tid[UVPN_NONCE_LEN];
} uvpn_ticket;

/* Every 64-bit field on the wire (seq, a ticket's issued time) is below 2^53, so that both codecs
 * hold it exactly (TypeScript numbers are doubles); larger values are refused. */
#define UVPN_MAX_U53 ((1ULL << 53) - 1)

static inline size_t uvpn_frame_len(size_t body_len) { return UVPN_HEAD_LEN + body_len + UVPN_MAC_LEN; }

/* Largest body allowed for a frame type on a link that is (or is not yet) authenticated (0 if
 * the type is unknown). */
size_t uvpn_max_body(int type, int authenticated);

/* Encodes a frame MACed with mk (the network key for HELLO/CHALLENGE, else a link key) into out
 * (capacity cap). Returns its length (64 + body_len) or a negative UVPN_E_*. body may be NULL
 * when body_len is 0, and may already be in place at out + 32. */
long uvpn_encode(uint8_t *out, size_t cap, const uint8_t mk[UVPN_KEY_LEN], int type, uint64_t seq,
                 uint32_t reqid, const uint8_t *body, size_t body_len);

/* Checks the 32-byte head: length, magic, version, type, reserved bytes, length limit. */
int uvpn_decode_head(const uint8_t *buf, size_t n, int authenticated, uvpn_head *h);

/* Decodes and verifies a complete frame under mk (head checks + constant-time MAC compare). n
 * must be exactly the frame length. On success *body points into buf. */
int uvpn_decode_frame(const uint8_t mk[UVPN_KEY_LEN], const uint8_t *buf, size_t n, int authenticated,
                      uvpn_head *h, const uint8_t **body);

const char *uvpn_strerror(int err);

/* HKDF-SHA256 (RFC 5869): n <= 255 * 32 bytes of okm. */
void uvpn_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
               const uint8_t *info, size_t info_len, uint8_t *okm, size_t n);
/* The link's direction keys from the network key and the two nonces: up (client to router) and
 * down (router to client). */
void uvpn_link_keys(const uint8_t key[UVPN_KEY_LEN], const uint8_t nc[UVPN_NONCE_LEN],
                    const uint8_t nr[UVPN_NONCE_LEN], uint8_t up[UVPN_KEY_LEN], uint8_t down[UVPN_KEY_LEN]);

void uvpn_connect_pack(const uvpn_connect *c, uint8_t out[UVPN_CONNECT_BODY_LEN]);
int uvpn_connect_unpack(const uint8_t *body, size_t len, uvpn_connect *c);
/* CONNECT answer data (after the status byte): 0 or UVPN_E_BODY. */
int uvpn_answer_unpack(const uint8_t *data, size_t len, uvpn_answer *a);

/* PATHS body: direct connections that ended (the connecting side reports them to its home
 * router, docs/PROTOCOL.md "Connections"): count u32, bytes sent u64, bytes received u64. */
#define UVPN_PATHS_LEN 20
typedef struct {
    uint32_t conns;
    uint64_t sent, received;
} uvpn_paths;
void uvpn_paths_pack(const uvpn_paths *p, uint8_t out[UVPN_PATHS_LEN]);
/* 0, or UVPN_E_BODY (length not 20, a count of 2^53 or more). */
int uvpn_paths_unpack(const uint8_t *body, size_t len, uvpn_paths *p);

/* Tickets: pack (and MAC with the network key) into out; check length (exactly 88), magic,
 * version, reserved bytes and MAC and unpack (0 or UVPN_E_*). */
void uvpn_ticket_pack(const uint8_t key[UVPN_KEY_LEN], const uvpn_ticket *t, uint8_t out[UVPN_TICKET_LEN]);
int uvpn_ticket_unpack(const uint8_t key[UVPN_KEY_LEN], const uint8_t *buf, size_t n, uvpn_ticket *t);

/* The seen-set of ticket ids of one process (docs/PROTOCOL.md, "Tickets"): no fixed cap on the
 * rate; past UVPN_SEEN_KEEP ids the oldest are forgotten and the low-water mark rises to the
 * newest forgotten issue time, below which tickets are refused. Thread-safe. Zero-initialise
 * with UVPN_SEEN_INIT. */
#define UVPN_SEEN_KEEP 65536
#define UVPN_SEEN_BUCKETS (2 * UVPN_SEEN_KEEP)

typedef struct {
    uint8_t tid[UVPN_NONCE_LEN];
    uint64_t issued;
    int32_t next;     /* hash chain: index into e, -1 at the end */
    uint8_t used;
} uvpn_seen_entry;

typedef struct {
    pthread_mutex_t lock;
    uint64_t low_water;          /* tickets issued before this are refused */
    uint32_t head, count;        /* ring of entries: oldest at head */
    int32_t *bucket;             /* UVPN_SEEN_BUCKETS chain heads, allocated on first use */
    uvpn_seen_entry *e;          /* UVPN_SEEN_KEEP entries */
} uvpn_seen;

#define UVPN_SEEN_INIT { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, NULL, NULL }

/* Accepts a ticket id once: 0, or UVPN_R_TIME (issued outside +-300 s of now_ms), UVPN_R_OLD,
 * UVPN_R_REPLAY, or -ENOMEM. */
int uvpn_seen_check(uvpn_seen *s, const uint8_t tid[UVPN_NONCE_LEN], uint64_t issued, uint64_t now_ms);

/* NAME body: flags u8, kind u8, then kind 1 (forward): name_len u8, name (1..63 bytes,
 * [A-Za-z0-9-]); kind 2 (reverse): ip[4]. Reply data: ip[4], name_len u8, name. */
#define UVPN_NAME_FORWARD 1
#define UVPN_NAME_REVERSE 2
#define UVPN_NAME_F_LOCAL 1     /* answer from the router's own leases only (router to router) */
#define UVPN_NAME_MAX 63

/* 1 if name (n bytes) is a valid overlay host name: 1..63 of [A-Za-z0-9-]. */
int uvpn_name_valid(const char *name, size_t n);
/* Packs a forward (name != NULL) or reverse query. Returns the body length or UVPN_E_BODY. */
long uvpn_name_pack(uint8_t out[3 + UVPN_NAME_MAX], int flags, const char *name, size_t n,
                    uint32_t ip);
/* Parses NAME reply data (after the status byte): *ip and the name, NUL-terminated, into
 * name[UVPN_NAME_MAX + 1]. 0 or UVPN_E_BODY. */
int uvpn_name_answer(const uint8_t *data, size_t len, uint32_t *ip, char name[UVPN_NAME_MAX + 1]);

/* Encapsulated UDP datagrams (docs/PROTOCOL.md, "Datagrams"): a 34-byte head
 * {magic "UVPD", version, reserved, src ip:port, dst ip:port, 16-byte truncated HMAC-SHA256 over
 * head bytes 0..17 and the payload}, then the payload. */
#define UVPN_DGRAM_MAGIC "UVPD" /* 55 56 50 44 */
#define UVPN_DGRAM_HEAD_LEN 34
#define UVPN_DGRAM_MAC_LEN 16
#define UVPN_DGRAM_MAX 65507 /* largest UDP payload over IPv4: the whole encapsulated datagram */
#define UVPN_DGRAM_MAX_PAYLOAD (UVPN_DGRAM_MAX - UVPN_DGRAM_HEAD_LEN)

typedef struct {
    uint32_t src_ip, dst_ip; /* host order */
    uint16_t src_port, dst_port;
} uvpn_dgram;

struct iovec;
/* Writes the head of d for the payload given as iov (iovcnt parts) into head. */
void uvpn_dgram_seal(const uint8_t key[UVPN_KEY_LEN], const uvpn_dgram *d, const struct iovec *iov,
                     int iovcnt, uint8_t head[UVPN_DGRAM_HEAD_LEN]);
/* Checks an encapsulated datagram of n bytes (head + payload): UVPN_OK with *d filled, or
 * UVPN_E_SHORT, UVPN_E_MAGIC, UVPN_E_VERSION, UVPN_E_MAC. The payload is buf + 34. */
int uvpn_dgram_open(const uint8_t key[UVPN_KEY_LEN], const uint8_t *buf, size_t n, uvpn_dgram *d);

/* Status <-> errno. Unknown status -> EPROTO; unknown errno -> UVPN_ST_ECONNREFUSED. */
int uvpn_status_to_errno(int status);
int uvpn_errno_to_status(int err);

/* Key text: exactly 64 hex digits, then only white space. Returns 0 or -1. */
int uvpn_key_parse(const char *text, size_t len, uint8_t key[UVPN_KEY_LEN]);
/* Reads and parses a key file; refuses files with any group/other permission bit. On failure
 * returns -errno-like code (-ENOENT, -EACCES, -EINVAL, ...) and writes the reason to why. */
int uvpn_key_load(const char *path, uint8_t key[UVPN_KEY_LEN], char *why, size_t why_len);

#endif
