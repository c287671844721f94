/* sockstate.h: the seccomp supervisor's overlay state per socket, keyed by the socket's inode
 * (fstat of a pidfd_getfd duplicate). One socket is one open file description wherever its fds
 * live, so dup, fork and exec in the supervised programs need no tracing. Entries live until
 * the supervised program ends (the supervisor does not see close()). Thread-safe. */
#ifndef MYRT_SOCKSTATE_H
#define MYRT_SOCKSTATE_H

#include <stdint.h>
#include <sys/types.h>

#include "uvpn/wrap/fdtable.h"

/* 1 and *out filled if the socket has state, else 0. */
int ss_get(ino_t ino, vinfo *out);
/* Sets (creates or replaces) the socket's state. 0, or -ENOMEM. */
int ss_set(ino_t ino, const vinfo *v);
/* Forgets the socket's state (if any). */
void ss_del(ino_t ino);
/* Number of sockets with state (0: nothing of the overlay exists yet). */
long ss_count(void);
/* Number of sockets whose state is of one of the kinds in mask (bit per vkind). */
long ss_count_kinds(int mask);
/* Forgets every state whose socket dead() says is gone, among those set before `before`
 * (mono_ms: younger ones may be missing from the caller's picture of the living); then calls
 * gone on a copy of each (lock not held). Returns how many were dropped. */
long ss_sweep(int64_t before, int (*dead)(ino_t, const vinfo *, void *), void *ctx,
              void (*gone)(const vinfo *));
/* Calls fn on a copy of every state (lock not held during the calls), then forgets them all. */
void ss_drain(void (*fn)(const vinfo *));

#endif
