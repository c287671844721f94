/* wrap.h: what libuvpn.so's wrapper files (uvpn/wrap/) share: the export marker, the
 * per-thread "inside the overlay" flag, the real-function guard and the vfork-child test. */
#ifndef UVPN_WRAP_H
#define UVPN_WRAP_H

#include "common/real.h"

#include <errno.h>

#define EXPORT __attribute__((visibility("default")))

/* Set while this thread runs overlay code: anything it triggers (e.g. an NSS module connecting
 * during name resolution) passes straight through, so the wrappers never recurse. Hidden: not
 * exported from libuvpn.so. Defined in socket.c. */
extern __thread __attribute__((tls_model("initial-exec"))) int inside;

/* Loads the real-libc table; a wrapper whose real function is missing fails with ENOSYS. */
#define NEED(fn)                   \
    do {                           \
        real_init();               \
        if (!real.fn) {            \
            errno = ENOSYS;        \
            return -1;             \
        }                          \
    } while (0)

/* Non-zero in the child of a vfork (shares the parent's memory: must not touch the fd table). */
int in_vfork_child(void);

/* True for an address of the overlay (the configuration is consulted "inside"). */
int is_virtual(uint32_t ip);

#include "uvpn/wrap/fdtable.h"
/* For fd with state *st: 0 when it is usable now (not a pending overlay connect, or one that
 * just got through: *st updated and stored); 1 while the overlay connect is in progress (the
 * call fails with EAGAIN, as on a connecting socket); -errno when it failed. Defined in socket.c. */
int pending_gate(int fd, vinfo *st);

#endif
