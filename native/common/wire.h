/* wire.h: the UVPN frame codec (docs/PROTOCOL.md, version 1): constants, frame encode/decode
 * and MAC verification, CONNECT body packing, status<->errno mapping, key file parsing and the
 * request replay cache. Pure logic: no sockets, no environment. */
#ifndef UVPN_WIRE_H
#define UVPN_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#define UVPN_MAGIC "UVPN" /* 55 56 50 4e */
#define UVPN_MAGIC_LEN 4
#define UVPN_VERSION 1
#define UVPN_HEAD_LEN 32
#define UVPN_MAC_LEN 32
#define UVPN_NONCE_LEN 16
#define UVPN_KEY_LEN 32
#define UVPN_MAX_REQ_BODY 1024   /* every type except REPLY */
#define UVPN_MAX_BODY 65535      /* REPLY */
#define UVPN_CONNECT_BODY_LEN 16

/* Frame types */
enum {
    UVPN_T_CONNECT = 1,
    UVPN_T_REPLY = 2,
    UVPN_T_LEASE = 3,
    UVPN_T_RELEASE = 4,
    UVPN_T_LIST = 5,
    UVPN_T_LISTEN = 6,
    UVPN_T_UNLISTEN = 7,
    UVPN_T_INFO = 8,
    UVPN_T_SESSION = 9, /* router to router: CONNECT body + session id */
    UVPN_T_RESUME = 10, /* router to router: session id + r_bytes */
    UVPN_T_STATUS = 11, /* a router's sessions and counters, as text */
    UVPN_T_UDPBIND = 12, /* ip, vport, real_port: a UDP endpoint (real_port 0: unregister) */
    UVPN_T_NAME = 13,   /* overlay host name <-> virtual address (see uvpn_name_pack) */
    UVPN_T_LAST = UVPN_T_NAME,
};

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
};

#define UVPN_PROTO_TCP 6
#define UVPN_PROTO_UDP 17

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
};

/* Replay cache results (negative) */
enum {
    UVPN_R_TIME = -20,    /* frame time outside +-300 s */
    UVPN_R_REPLAY = -21,  /* nonce already seen */
    UVPN_R_FULL = -22,    /* cache full of live nonces: refused (fail closed) */
};

typedef struct {
    uint8_t type;
    uint16_t len;                     /* body length L */
    uint8_t nonce[UVPN_NONCE_LEN];
    uint64_t time_ms;
} uvpn_head;

/* CONNECT body. IPv4 addresses are host-order uint32 (10.0.0.1 == 0x0a000001). */
typedef struct {
    uint8_t proto, flags;
    uint16_t src_port;
    uint32_t src_ip;
    uint32_t dst_ip;
    uint16_t dst_port;
} uvpn_connect;

static inline size_t uvpn_frame_len(size_t body_len) { return UVPN_HEAD_LEN + body_len + UVPN_MAC_LEN; }

/* Largest body allowed for a frame type (0 if the type is unknown). */
size_t uvpn_max_body(int type);

/* Encodes a frame into out (capacity cap). Returns its length (64 + body_len) or a negative
 * UVPN_E_* (E_TYPE, E_LENGTH, E_SPACE). body may be NULL when body_len is 0. */
long uvpn_encode(uint8_t *out, size_t cap, const uint8_t key[UVPN_KEY_LEN], int type,
                 const uint8_t nonce[UVPN_NONCE_LEN], uint64_t time_ms, const uint8_t *body,
                 size_t body_len);

/* Checks the 32-byte head: length, magic, version, type, length limit for the type. */
int uvpn_decode_head(const uint8_t *buf, size_t n, uvpn_head *h);

/* Decodes and verifies a complete frame (head checks + constant-time MAC compare). n must be
 * exactly the frame length. On success *body points into buf. */
int uvpn_decode_frame(const uint8_t key[UVPN_KEY_LEN], const uint8_t *buf, size_t n,
                      uvpn_head *h, const uint8_t **body);

const char *uvpn_strerror(int err);

void uvpn_connect_pack(const uvpn_connect *c, uint8_t out[UVPN_CONNECT_BODY_LEN]);
int uvpn_connect_unpack(const uint8_t *body, size_t len, uvpn_connect *c);

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

/* Replay cache: accepts a request only when its time is within +-UVPN_TIME_WINDOW_MS of now and
 * its nonce was not seen in the last UVPN_REPLAY_KEEP_MS. Bounded (UVPN_REPLAY_CAP entries, a
 * FIFO in arrival order); when full of still-live nonces new requests are refused (fail closed).
 * Thread-safe. Zero-initialise with UVPN_REPLAY_INIT. */
#define UVPN_TIME_WINDOW_MS 300000ULL
#define UVPN_REPLAY_KEEP_MS 600000ULL
#define UVPN_REPLAY_CAP 8192

typedef struct {
    uint8_t nonce[UVPN_NONCE_LEN];
    uint64_t expires_ms;   /* arrival + UVPN_REPLAY_KEEP_MS */
} uvpn_replay_entry;

typedef struct {
    pthread_mutex_t lock;
    size_t head, count;    /* ring: oldest at head */
    uvpn_replay_entry e[UVPN_REPLAY_CAP];
} uvpn_replay;

#define UVPN_REPLAY_INIT { PTHREAD_MUTEX_INITIALIZER, 0, 0, {{{0}, 0}} }

/* Returns 0 (accepted and remembered) or UVPN_R_*. now_ms = receiver's Unix time in ms. */
int uvpn_replay_check(uvpn_replay *rc, const uint8_t nonce[UVPN_NONCE_LEN], uint64_t frame_time_ms,
                      uint64_t now_ms);

#endif
