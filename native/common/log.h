/* log.h: debug diagnostics ("uvpn: ..." lines on stderr when UVPN_DEBUG is set; "xufs: ..." and
 * XUFS_DEBUG in libxufs.so, see LOG_TAG / LOG_ENV in log.c) and errno names. */
#ifndef UVPN_LOG_H
#define UVPN_LOG_H

/* Non-zero when the debug variable is set and non-empty (read once). */
int log_enabled(void);
/* Writes "uvpn: <message>\n" to fd 2 in one write() when debugging is on; preserves errno. */
void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ENETUNREACH", "EACCES", ... (or "E<number>"); thread-safe, static strings. */
const char *errno_name(int e);
/* Inverse of errno_name for the names it knows (plus ENOTSUP, EWOULDBLOCK); 0 if unknown. */
int errno_from_name(const char *name);

#endif
