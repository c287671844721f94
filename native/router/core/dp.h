/* dp.h: the routers' data plane (docs/PROTOCOL.md, "Sessions between routers"; docs/UVPN.md),
 * the internal interface between its files. One thread per router runs an epoll loop that owns
 * every socket the bytes of virtual connections cross: router links to peer routers (adopted
 * from the TypeScript control plane after their handshake), the programs' connections (accepted
 * on its own data port and attached once their DATA ticket was checked, or dialed here), and
 * local relays. The control plane talks to
 * it through a command queue (router/api.c) and gets events back through an event queue.
 *
 *   loop.c     the thread, epoll, timers, the command and event queues, the tables
 *   link.c     router links: frames in (parsing, MACs, dispatch) and out (queue, writev),
 *              keepalive and RTT, TIME_WAIT confirmations
 *   session.c  sessions: application I/O, replay and receive buffers, window, spool, open,
 *              resume, clean end and reset
 *   relay.c    local relays (same subnet) and the dial of a listener with its RELAYED ticket
 *   data.c     the data port: programs' data connections and their DATA tickets
 *   adopt.c    taking a socket over from Deno
 */
#ifndef UVPN_ROUTER_DP_H
#define UVPN_ROUTER_DP_H

#include "common/wire.h"
#include "router/core/bufq.h"
#include "router/core/frame.h"
#include "router/core/gcm.h"
#include "router/core/map.h"
#include "router/core/spool.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* ---- configuration (from the control plane: router/dataplane.ts encodes it) ---------------- */

typedef struct {
    uint8_t key[UVPN_KEY_LEN];
    uint32_t window;          /* --session-window: bytes a receiver buffers per session direction */
    uint64_t memory_limit;    /* --memory-limit */
    uint64_t spool_limit;     /* --spool-limit: per session direction */
    uint64_t spool_total;     /* --spool-limit-total */
    uint32_t dead_ms;         /* --dead-after */
    uint32_t keepalive_ms;    /* PING period of a rlink */
    uint32_t dial_ms;         /* --timeout: dialing a listener */
    uint32_t outage_ms;       /* --outage-limit */
    uint32_t bdp_max;         /* largest bandwidth-delay allowance added to a window */
    uint8_t encrypt;          /* --encrypt: sessions answered here are encrypted */
    char spool_dir[4096];
} dp_config;

/* ---- lists ----------------------------------------------------------------------------------- */

typedef struct dnode {
    struct dnode *prev, *next;
} dnode;

static inline void dl_init(dnode *h) { h->prev = h->next = h; }
static inline int dl_empty(const dnode *h) { return h->next == h; }
static inline int dl_linked(const dnode *n) { return n->next != NULL; }
static inline void dl_push(dnode *h, dnode *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void dl_del(dnode *n)
{
    if (!n->next) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}
#define DL_ENTRY(ptr, type, member) ((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

/* ---- what an epoll event points at ---------------------------------------------------------- */

enum { H_WAKE = 1, H_LINK, H_APP, H_RELAY_A, H_RELAY_B, H_DIAL, H_DATA_LISTEN, H_DATA };

/* Sessions and relays start with this head: a handle's object says what it is, and the work
 * and grave lists hold either. */
enum { K_SESS = 1, K_RELAY = 2 };
typedef struct {
    uint32_t id;              /* handle shared with the control plane */
    uint8_t kind;
    uint8_t dead;             /* ended: freed at the end of the loop turn (dp.grave) */
    dnode work;               /* dp.work (application I/O to try), then dp.grave */
} objhead;

typedef struct {
    int kind;
    void *obj;
} handler;

/* A program's connection (or a listener being dialed), edge-triggered. */
typedef struct {
    int fd;
    uint8_t rd_ready, wr_ready, rd_eof, wr_shut;
    uint8_t rd_hup;           /* an event said the peer closed (or failed): read until EOF */
    handler h;
} appsock;

/* ---- link output: queued frames, written with writev ---------------------------------------- */

struct sess;

typedef struct {
    uint8_t hdr[64];          /* a session frame's head (32) and tag (16), or a whole small one */
    uint16_t hlen;            /* bytes of hdr before the payload (32), or all of it (no payload) */
    uint16_t tlen;            /* bytes of hdr after the payload (the tag) */
    const uint8_t *pay;       /* payload: in a replay buffer, or in own */
    uint32_t pay_len;
    uint8_t *own;             /* freed once written (or back to outq.ct when ct_own) */
    uint8_t ct_own;           /* own is a ciphertext buffer of SF_MAX_DATA bytes from outq.ct */
    struct sess *s;           /* the session it belongs to (NULL: a link frame) */
} qframe;

/* Ciphertext buffers (--encrypt's DATA bodies) kept for reuse by a link's queue: as many as a
 * full queue holds (OUT_HIGH), dropped when a keepalive period passed without encrypting. */
#define CT_SPARES 17

typedef struct {
    qframe *q;
    uint32_t cap, head, count;
    size_t off;               /* bytes of the first frame already written */
    uint64_t bytes;           /* bytes queued */
    uint8_t *ct[CT_SPARES];   /* spare ciphertext buffers */
    uint32_t nct;
    uint8_t ct_used;          /* one was taken since the last keepalive */
} outq;

/* ---- router links --------------------------------------------------------------------------- */

/* DATA payloads taken from a link's input buffer (decrypted in place there) and not yet written
 * to their programs: one writev per session per read of the link (session.c, sess_deliver). */
#define PEND_MAX 64
typedef struct {
    struct sess *s;
    const uint8_t *p;
    uint32_t n;
} pending;

typedef struct rlink {
    uint32_t id;              /* the control plane's id */
    uint32_t peer;            /* dialer: the peer's id (route); 0: a link we accepted */
    int fd;
    uint8_t dead;             /* closed: waiting to be freed at the end of the loop turn */
    handler h;
    uint8_t rd_ready, wr_ready;
    uint8_t rd_hup;           /* an event said the peer closed (or failed): read until EOF */
    uint8_t ksend[UVPN_KEY_LEN], krecv[UVPN_KEY_LEN];
    uint64_t sseq, rseq;      /* link frames: next seq to send, next expected */
    uint8_t *in;              /* input buffer */
    size_t in_len;
    pending pend[PEND_MAX];   /* payloads in `in` waiting for sess_deliver */
    uint32_t npend;
    outq out;
    int64_t last_rx, last_tx, ping_at; /* ms */
    uint64_t ping_token;      /* token of the PING in flight (0: none) */
    uint64_t ping_next;       /* token the next PING will carry */
    uint32_t srtt_us;         /* smoothed round-trip time, from PING/PONG */
    u64map sessions;          /* session number -> sess */
    uint32_t next_num;        /* dialer: next session number */
    uint32_t nsessions;
    dnode ready;              /* sessions with frames to send (sess.rdy) */
    dnode timewait;           /* answered sessions ended here, until the peer confirmed */
    dnode node;               /* in dp.links */
    dnode dirty;              /* in dp.dirty: has output to write */
    char why[160];            /* why it died */
} rlink;

/* ---- sessions ------------------------------------------------------------------------------- */

enum { S_OPENING = 1, S_DIALING, S_UP, S_DOWN, S_RESUMING, S_DRAIN };

#define NO_FIN UINT64_MAX

typedef struct sess {
    objhead o;
    uint8_t sid[UVPN_NONCE_LEN];
    uint8_t opener;           /* 1: we opened it (our router dialed the link) */
    uint8_t st;
    uint8_t enc;
    uint8_t reset_pending;    /* reset the peer's application once attached (our END is out) */
    uint8_t ended;            /* EV_END sent */
    uint8_t opened;           /* reached S_UP once */
    uint8_t rst_reason;
    uint32_t peer;            /* opener: the peer's id */
    uvpn_connect c;
    rlink *lk;                 /* current link (NULL while down) */
    uint32_t num;             /* session number on it */
    uvpn_gcm *ktx, *krx;      /* this attachment's keys */
    uint64_t ctr_tx, ctr_rx;
    uint8_t nonce[UVPN_NONCE_LEN]; /* our nonce in the pending OPEN / RESUME */
    appsock app;              /* fd -1 until attached */
    /* our stream: positions 0 .. N-1 are bytes, N is the FIN */
    bufq snd;                 /* unacknowledged bytes in memory: [acked, snd.end) */
    spool sp;                 /* bytes after them, read while the link was down */
    uint64_t snd_read;        /* bytes read from the application (snd.end + spool) */
    uint64_t snd_nxt;         /* next position to send on this attachment */
    uint64_t snd_max;         /* highest position ever sent (+1 once a FIN was sent) */
    uint64_t peer_ack;        /* positions of our stream the peer has */
    uint64_t peer_wend;       /* we may send positions below this */
    uint8_t app_eof, fin_out; /* application half-closed; FIN queued on this attachment */
    /* the peer's stream */
    bufq rcv;                 /* received, not yet written to the application */
    uint64_t rcv_nxt;         /* positions received (+1 once its FIN came) */
    uint64_t rcv_fin;         /* its byte count, or NO_FIN */
    uint64_t pend_from;       /* stream offset of its first payload in lk->pend (pend_n > 0) */
    uint32_t pend_n;          /* payloads of it in lk->pend */
    uint64_t adv_ack, adv_wend; /* what we last advertised */
    uint8_t ack_now;          /* an ACK must go out (FIN received, resumed, window reopened) */
    int64_t rate_t;           /* ms of the last window update (rate measurement) */
    uint64_t rate_deliv;      /* delivered bytes then */
    uint32_t bdp;             /* bandwidth-delay allowance added to the window */
    uint8_t close_out;        /* answerer: CLOSE queued */
    uint8_t spool_full;       /* a spool limit paused its reads (logged once per outage) */
    uint64_t granted;         /* its part of dp.granted: window granted, not yet received */
    uint8_t lid[UVPN_LID_LEN];/* answerer: the listener registration dialed */
    /* lists */
    dnode rdy;                /* link.ready */
    dnode timer;              /* dp.dialing, dp.down or dp.waiting (FIFO deadlines) */
    int64_t timer_at;
    dnode mem;                /* dp.memwait */
    /* counters */
    uint64_t reconnects, replayed, spooled;
} sess;

/* A session that ended cleanly here as the answerer, kept until the opener has seen its CLOSE
 * (a PONG after it) or a RESUME for it came, or the outage limit passed. */
typedef struct {
    uint8_t sid[UVPN_NONCE_LEN];
    uint64_t recv;            /* positions of the opener's stream we received */
    uint8_t enc;
    uint64_t token;           /* the PING whose PONG confirms it */
    int64_t at;
    rlink *lk;
    dnode on_link, fifo;
} timewait;

/* ---- local relays --------------------------------------------------------------------------- */

typedef struct relay {
    objhead o;
    appsock a, b;             /* a: the client's data connection; b: the listener */
    bufq ab, ba;              /* bytes read from one side that the other has not taken */
    uint64_t up, down;        /* bytes a -> b, b -> a */
    uint8_t dialing;
    dnode timer;
    int64_t timer_at;
    uvpn_connect c;
    uint8_t lid[UVPN_LID_LEN];
} relay;

/* ---- listeners of our subnet (listen.c) ------------------------------------------------------ */

typedef struct {
    uint16_t real_port;
    uint8_t lid[UVPN_LID_LEN];
    char host[64];            /* the real host (text), NUL-terminated */
} dp_listener;

/* ---- the data port (data.c) ------------------------------------------------------------------ */

typedef struct {
    int fd;                   /* the listening socket (-1: none yet) */
    handler h;
    uint32_t per_source, total; /* connections without a checked ticket allowed */
    uint32_t handshake_ms;    /* time a connection gets to present its ticket */
    uint32_t ticket_ms;       /* time an expected ticket waits for its connection */
    uint32_t pending;         /* connections without a checked ticket now */
    int64_t paused_until;     /* accept failed (EMFILE...): new connections wait until then (ms) */
    int64_t logged_at;        /* when that was last logged */
    u64map by_source;         /* source key -> their count (as a pointer-sized integer) */
    u64map expects;           /* ticket id's first 8 bytes -> the expected ticket */
    dnode expect_fifo, preauth_fifo; /* oldest first (one fixed timeout each) */
} dp_data;

/* An address as 16 bytes (IPv4 as v4-mapped IPv6) and a port (adopt.c). */
typedef struct {
    uint8_t a[16];
    uint16_t port;
} addr16;

int addr16_text(const char *s, uint16_t port, addr16 *out); /* 0, or -1 if not an address */
/* A numeric host (IPv4 or IPv6) and port as a socket address: its length, 0 if not an address. */
socklen_t sockaddr_text(const char *host, uint16_t port, struct sockaddr_storage *ss);
int addr16_sock(const struct sockaddr_storage *ss, addr16 *out);

/* ---- the data plane ------------------------------------------------------------------------- */

typedef struct {
    uint64_t sent, received;          /* session bytes: read from our programs, written to them */
    uint64_t local_up, local_down;    /* local relays */
    uint64_t sessions_total, sessions_clean, sessions_reset, sessions_live;
    uint64_t relays_total, relays_live;
    uint64_t links_up, link_losses, resumes, replayed;
    uint64_t frames_in, frames_out;
    uint64_t refused_mac, refused_seq, refused_frame, refused_protocol, ignored_unknown;
} dp_counters;

typedef struct dp {
    dp_config cfg;
    int ep, wake;             /* epoll, eventfd */
    handler wake_h;
    pthread_t thread;
    int running;
    /* commands in, events out */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    uint8_t *cmds;
    size_t cmd_len, cmd_cap;
    uint8_t *evs;
    size_t ev_len, ev_cap;
    int stopped;
    /* tables */
    u64map conns;             /* id -> sess or relay (objhead tells which) */
    u64map by_sid;            /* session id (first 8 bytes) -> sess */
    u64map tw_by_sid;         /* -> timewait */
    u64map listeners;         /* virtual ip << 16 | port -> dp_listener (listen.c) */
    dp_data data;             /* the data port (data.c) */
    uint32_t next_answer_id;  /* ids of sessions answered here: 0x80000000 | n */
    dnode links, dirty, work, dialing, down, waiting, timewaits, memwait;
    dnode rdialing;           /* relays dialing */
    dnode grave;              /* sessions and relays that ended this turn (objhead.work) */
    bq_mem mem;
    uint64_t granted;         /* bytes every session's peer may still send us (windows granted):
                               * held memory plus this is what --memory-limit bounds */
    spool_acct spool;
    dp_counters n;
    uint8_t *scratch;         /* reads from programs in small amounts */
    int64_t now;              /* ms, this loop turn */
    int64_t (*clock)(void);   /* the clock in ms: NULL is CLOCK_MONOTONIC (dp_mono_ms); tests set
                               * their own (native/tests/test_sessions.c) */
    int dummy;                /* an unconnected socket that takes the place of adopted fds */
} dp;

/* loop.c */
int64_t dp_mono_ms(void);
int dp_init(dp *d);           /* tables, epoll and the wake eventfd: 0 or -errno */
int dp_start(dp *d);          /* the thread: turns until CMD_SHUTDOWN, then dp_finish */
/* One turn: timers, events (waiting at most max_wait_ms; -1: until the next timer), the work,
 * the links' output, the frees. dp_start's thread runs it; a test calls it with 0. */
void dp_turn(dp *d, int max_wait_ms);
void dp_finish(dp *d);        /* everything still open ends (reset), then is freed */
int dp_post(dp *d, const uint8_t *p, size_t n); /* queues a command (type byte, body): 0 or -ENOMEM */
size_t dp_take_events(dp *d, uint8_t *buf, size_t cap); /* whole event records moved into buf */
void dp_event(dp *d, int type, const uint8_t *p, size_t n);
void dp_log(dp *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dp_watch(dp *d, int fd, handler *h);
void dp_unwatch(dp *d, int fd);
void dp_work(dp *d, dnode *n);
void dp_stat(uint64_t *c, int64_t by);
void dp_trace(const char *step); /* UVPN_TRACE_FILE: a step's timestamp (router/trace.ts) */
void dp_commands(dp *d);      /* runs the queued commands now (also within a turn's events) */
/* A program's connection for session or local relay `id`: attached (0), or reset and closed
 * (-1: no such object, or it has its connection already). */
int dp_attach(dp *d, uint32_t id, int fd);

/* link.c */
rlink *link_add(dp *d, const uint8_t *cmd, size_t n, int fd);
void link_io(dp *d, rlink *l, uint32_t events);
void link_flush(dp *d, rlink *l);
void link_kill(dp *d, rlink *l, const char *why);
void link_timers(dp *d, rlink *l, int64_t *next);
void link_free(dp *d, rlink *l);
void link_ready(rlink *l, sess *s);  /* s has frames to send: joins the round robin */
int link_send_ctl(rlink *l, int type, uint32_t reqid, const uint8_t *body, size_t n);
/* Queues a session frame (sealed with the session's key and next counter): DATA's payload stays
 * where it is (the replay buffer) until written; other bodies (RST's byte) are copied. */
void link_queue_session(rlink *l, sess *s, const sf_head *h, const uint8_t *pay, size_t n);
/* The session leaves the link: its queued frames still go out (payloads copied) ... */
void link_keep(rlink *l, sess *s);
/* ... or are dropped (except one partly written, which completes from a copy). */
void link_cancel(rlink *l, sess *s);
void link_mark_dirty(dp *d, rlink *l);
rlink *link_for_peer(dp *d, uint32_t peer);
uint32_t links_of_peer(dp *d, uint32_t peer);
void timewait_add(dp *d, rlink *l, sess *s);
void timewait_free(dp *d, timewait *t);

/* session.c */
sess *sess_new(dp *d, uint32_t id, int opener);
void sess_open(dp *d, const uint8_t *cmd, size_t n);
void sess_on_open(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n);
void sess_on_opened(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n);
void sess_on_resume(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n);
void sess_on_resumed(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n);
int sess_on_frame(dp *d, rlink *l, sess *s, const sf_head *h, uint8_t *frame);
/* Writes the DATA payloads parked in l->pend to their programs (one writev per session); what a
 * program does not take goes to its receive buffer. Called before the input buffer moves and
 * before any frame other than DATA is handled. */
void sess_deliver(dp *d, rlink *l);
void sess_emit(dp *d, rlink *l, sess *s);
int sess_has_output(dp *d, sess *s);
void sess_app_io(dp *d, sess *s);
void sess_app_event(dp *d, sess *s, uint32_t events);
void sess_detach(dp *d, sess *s, int down);
void sess_link_up(dp *d, rlink *l);
void sess_attach_app(dp *d, sess *s, int fd);
void sess_abort(dp *d, sess *s, int reason, const char *why);
void sess_reset(dp *d, sess *s, const char *why);
void sess_timer(dp *d, sess *s);
/* Answerer: dial the listener at host:port (registration lid) for s, then OPENED (sess_dialed). */
void sess_dial(dp *d, sess *s, const char *host, uint16_t port, const uint8_t lid[UVPN_LID_LEN]);
void sess_dialed(dp *d, sess *s, int fd, int err);
void sess_refuse(dp *d, sess *s, int status);
/* Memory was freed (bq_mem.freed): the sessions waiting for room (dp.memwait) try again. */
void sess_memory_freed(dp *d);
void sess_snapshot(dp *d, uint32_t token);
void sess_free(dp *d, sess *s);
void peer_link_failed(dp *d, uint32_t peer, int status);

/* relay.c */
int dial_start(dp *d, appsock *a, const char *host, uint16_t port, int kind, void *obj);
int dial_finish(appsock *a);
int write_ticket(dp *d, const uvpn_connect *c, const uint8_t lid[UVPN_LID_LEN], int fd);
void obj_bury(dp *d, objhead *o);
void relay_dial(dp *d, const uint8_t *cmd, size_t n);
/* A program's connection taken on by the data plane (dp_attach: the data port, CMD_ATTACH):
 * non-blocking, TCP_NODELAY and SO_KEEPALIVE, set here rather than on the control plane's thread. */
void app_adopted(int fd);
void relay_attach(dp *d, relay *r, int fd);
void relay_event(dp *d, relay *r, int side, uint32_t events);
void relay_io(dp *d, relay *r);
void relay_close(dp *d, relay *r, int reset, const char *why);
void relay_timer(dp *d, relay *r);
void app_reset_close(appsock *a);

/* listen.c */
void listener_set(dp *d, const uint8_t *cmd, size_t n);
const dp_listener *listener_find(dp *d, uint32_t ip, uint16_t port);
void listeners_free(dp *d);

/* data.c */
int data_open(const char *host, uint16_t port, uint16_t *bound); /* the listening socket, or -errno */
void data_listen(dp *d, const uint8_t *cmd, size_t n);
void data_expect(dp *d, const uint8_t *cmd, size_t n);
void data_accept(dp *d);
void data_event(dp *d, void *conn);
int64_t data_timers(dp *d);   /* expires what is due; the next deadline (INT64_MAX: none) */
void data_free(dp *d);

/* adopt.c */
int dp_adopt_fd(dp *d, const uint8_t *addrs, size_t n);
void dp_adopt_init(dp *d);

/* Events to the control plane (router/dataplane.ts decodes them). */
enum {
    EV_OPEN_REQ = 1,   /* answerer: id u32, link u32, sid[16], connect[14], enc u8 */
    EV_OPENED = 2,     /* opener: id u32, status u8, enc u8 */
    EV_DIAL_FAIL = 3,  /* id u32, status u8, errno i32 (a listener could not be reached) */
    EV_RELAY_READY = 4,/* id u32, status u8 */
    EV_END = 5,        /* id u32, clean u8, opener u8, sent u64, received u64, reconnects u32, replayed u64, spooled u64, why */
    EV_RELAY_END = 6,  /* id u32, reset u8, up u64, down u64, why */
    EV_LINK_DOWN = 7,  /* link u32, peer u32, sessions u32, unacked u64, why */
    EV_NEED_LINK = 8,  /* peer u32 */
    EV_LOG = 9,        /* text */
    EV_SNAPSHOT = 10,  /* token u32, text */
    EV_OPEN_DIALED = 11, /* answerer, a listener of listen.c dialed for a peer's OPEN without
                          * asking: as EV_OPEN_REQ, then real_port u16, host (text) */
    EV_DATA_ATTACHED = 12, /* id u32: its data connection presented its ticket and is attached */
    EV_DATA_REFUSED = 13,  /* peer_len u8, peer "host:port", why (text): a connection to the data port */
    EV_DATA_EXPIRED = 14,  /* id u32: no data connection in time; the session or relay ended */
};

/* Commands from the control plane. */
enum {
    CMD_LINK_ADD = 1,      /* fd i32, link u32, peer u32, ksend[32], krecv[32], sseq u64, rseq u64 */
    CMD_OPEN = 2,          /* id u32, peer u32, sid[16], connect[14], enc u8 */
    CMD_ANSWER_DIAL = 3,   /* id u32, port u16, lid[8], host (text) */
    CMD_ANSWER_REFUSE = 4, /* id u32, status u8 */
    CMD_ATTACH = 5,        /* id u32, fd i32: a session's or relay's connection, handed over
                            * without a ticket (native/tests/test_sessions.c plays the control
                            * plane with it; the router's come through the data port) */
    CMD_RELAY_DIAL = 7,    /* id u32, port u16, lid[8], connect[14], host (text) */
    CMD_SNAPSHOT = 10,     /* token u32 */
    CMD_LINK_FAIL = 11,    /* peer u32, status u8: no link to the peer could be opened */
    CMD_SHUTDOWN = 12,     /* everything ends (reset) */
    CMD_LISTENER = 13,     /* ip u32, port u16, real_port u16, lid[8], host (text; none: removed) */
    CMD_DATA_LISTEN = 14,  /* fd i32, per_source u32, total u32, handshake_ms u32, ticket_ms u32 */
    CMD_EXPECT = 15,       /* id u32, issued u64, tid[16], connect[14], host (text): a DATA ticket */
};

#endif
