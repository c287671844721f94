/* frame.h: the frames of a router link that carries sessions (docs/PROTOCOL.md, "Sessions
 * between routers"), C side: telling link frames (the common frame of common/wire.h, HMAC-SHA256
 * under the link's direction key, seq counting) from session frames (a 32-byte head carrying the
 * stream offset, the session number and the piggybacked acknowledgement and window, then the
 * body and a 16-byte AES-256-GCM tag under the session's direction key), the bodies of the link
 * frames (MUX, OPEN, OPENED, RESUME, RESUMED, PING), and the session keys (HKDF-SHA256 of the
 * network key and both routers' fresh nonces). Pure logic: no sockets, no state. */
#ifndef UVPN_ROUTER_FRAME_H
#define UVPN_ROUTER_FRAME_H

#include "common/wire.h"
#include "router/core/gcm.h"

#include <stddef.h>
#include <stdint.h>

#define SF_HEAD_LEN 32
#define SF_TAG_LEN 16
#define SF_MAX_DATA 65535

/* Session frame types (link frame types are in common/wire.h). */
enum {
    SF_T_DATA = 22,  /* seq = stream offset of its first byte; body = bytes (1..65535) */
    SF_T_ACK = 23,   /* seq = the sender's stream position; no body */
    SF_T_FIN = 24,   /* seq = the sender's final byte count (its stream ends there); no body */
    SF_T_RST = 25,   /* seq = the sender's stream position; body = reason u8 */
    SF_T_CLOSE = 29, /* answerer to opener: the session ended cleanly on both sides; no body */
};

/* RST reasons. */
enum {
    SF_RST_APP = 1,      /* the application reset its connection, or it failed */
    SF_RST_NOAPP = 2,    /* the opener's program never came to use the connection */
    SF_RST_SHUTDOWN = 3, /* the router is shutting down */
    SF_RST_LIMIT = 4,    /* a limit of the router (outage, spool) */
};

/* Flags of OPEN, OPENED, RESUMED. */
#define SF_F_ENCRYPT 1 /* session bodies encrypted (AES-256-GCM) rather than only authenticated */
#define SF_F_ENDED 2   /* RESUMED: the session already ended cleanly at the answerer */

/* A session frame's head. */
typedef struct {
    uint8_t type;
    uint16_t len;     /* body length */
    uint64_t seq;     /* stream offset */
    uint32_t num;     /* session number on this rlink */
    uint64_t ack;     /* positions of the receiver's stream the sender has received */
    uint32_t window;  /* positions beyond ack the sender will accept */
} sf_head;

/* 1 for session frame types. */
int sf_is_session(int type);

/* Writes the 32-byte head. */
void sf_head_pack(uint8_t out[SF_HEAD_LEN], const sf_head *h);

/* What the bytes at the start of a router link's input buffer are. */
typedef struct {
    int session;     /* 1: a session frame (head in sh); 0: a link frame (head in lh) */
    size_t len;      /* the whole frame's length */
    sf_head sh;
    uvpn_head lh;
} sf_frame;

/* Looks at the n bytes at buf: UVPN_E_SHORT when a frame's head or length is not yet complete
 * (read more), a negative UVPN_E_* when it can be no valid frame (end the link), else 0 with f
 * filled (f->len bytes of buf are the frame). Checks magic, version, type, reserved bytes of link
 * frames and the body length of each type; no MAC. */
int sf_next(const uint8_t *buf, size_t n, sf_frame *f);

/* Seals a session frame in place: head (already packed), body of len bytes at frame + 32
 * (encrypted in place with enc), tag written after the body. counter: the frame's number in
 * its session and direction since the session was (re)attached. */
void sf_seal(const uvpn_gcm *k, uint64_t counter, uint8_t *frame, size_t len, int enc);
/* Verifies (and with enc decrypts in place) a whole session frame of 48 + len bytes. 0 or
 * UVPN_E_MAC. */
int sf_open(const uvpn_gcm *k, uint64_t counter, uint8_t *frame, size_t len, int enc);

/* Session keys: HKDF(network key, salt = opener nonce || answerer nonce, info = "uvpn session
 * v2" || session id, 64): the opener's direction (opener to answerer) first. */
void sf_session_keys(const uint8_t key[UVPN_KEY_LEN], const uint8_t n_open[UVPN_NONCE_LEN],
                     const uint8_t n_ans[UVPN_NONCE_LEN], const uint8_t sid[UVPN_NONCE_LEN],
                     uint8_t o2a[UVPN_KEY_LEN], uint8_t a2o[UVPN_KEY_LEN]);

/* Link frame bodies. */
#define SF_MUX_LEN 6
#define SF_OPEN_LEN 51
#define SF_OPENED_LEN 22
#define SF_RESUME_LEN 44
#define SF_RESUMED_LEN 30
#define SF_PING_LEN 8

typedef struct { uint8_t flags; uint32_t net; uint8_t prefix; } sf_mux;
typedef struct {
    uint8_t sid[UVPN_NONCE_LEN], nonce[UVPN_NONCE_LEN];
    uvpn_connect c;
    uint8_t flags;
    uint32_t window;
} sf_open_body;
typedef struct { uint8_t status, nonce[UVPN_NONCE_LEN], flags; uint32_t window; } sf_opened_body;
typedef struct { uint8_t sid[UVPN_NONCE_LEN]; uint64_t recv; uint8_t nonce[UVPN_NONCE_LEN]; uint32_t window; } sf_resume_body;
typedef struct { uint8_t status; uint64_t recv; uint8_t nonce[UVPN_NONCE_LEN]; uint8_t flags; uint32_t window; } sf_resumed_body;

void sf_mux_pack(const sf_mux *m, uint8_t out[SF_MUX_LEN]);
int sf_mux_unpack(const uint8_t *b, size_t n, sf_mux *m);
void sf_open_pack(const sf_open_body *o, uint8_t out[SF_OPEN_LEN]);
int sf_open_unpack(const uint8_t *b, size_t n, sf_open_body *o);
void sf_opened_pack(const sf_opened_body *o, uint8_t out[SF_OPENED_LEN]);
int sf_opened_unpack(const uint8_t *b, size_t n, sf_opened_body *o);
void sf_resume_pack(const sf_resume_body *r, uint8_t out[SF_RESUME_LEN]);
int sf_resume_unpack(const uint8_t *b, size_t n, sf_resume_body *r);
void sf_resumed_pack(const sf_resumed_body *r, uint8_t out[SF_RESUMED_LEN]);
int sf_resumed_unpack(const uint8_t *b, size_t n, sf_resumed_body *r);

uint64_t sf_get64(const uint8_t *p);
void sf_put64(uint8_t *p, uint64_t v);

#endif
