/* log.h: UVPN_DEBUG diagnostics ("uvpn: ..." lines on stderr) and errno names. */
#ifndef UVPN_LOG_H
#define UVPN_LOG_H

/* Non-zero when UVPN_DEBUG is set and non-empty (read once). */
int log_enabled(void);
/* Writes "uvpn: <message>\n" to fd 2 in one write() when debugging is on; preserves errno. */
void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ENETUNREACH", "EACCES", ... (or "E<number>"); thread-safe, static strings. */
const char *errno_name(int e);

#endif
