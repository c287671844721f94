/*
 * forksafe.h — a file-local mutex that is safe across fork(): held by the forking thread during
 * fork, released in parent and child, so a child never inherits it locked. One definition
 * serves the fd tables of libuvpn.so and libxufs.so.
 *
 * FORKSAFE_MUTEX(lock, lock_fn) defines `static pthread_mutex_t lock` and `static void
 * lock_fn(void)`, which registers the fork handlers once and then locks; unlock with
 * pthread_mutex_unlock(&lock).
 */
#ifndef MYRT_FORKSAFE_H
#define MYRT_FORKSAFE_H

#include <pthread.h>

#define FORKSAFE_MUTEX(lock, lock_fn)                                                         \
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;                                  \
    static pthread_once_t lock##_once = PTHREAD_ONCE_INIT;                                    \
    static void lock##_prepare(void) { pthread_mutex_lock(&lock); }                          \
    static void lock##_after(void) { pthread_mutex_unlock(&lock); }                          \
    static void lock##_init(void) { pthread_atfork(lock##_prepare, lock##_after, lock##_after); } \
    static void lock_fn(void)                                                                 \
    {                                                                                         \
        pthread_once(&lock##_once, lock##_init);                                              \
        pthread_mutex_lock(&lock);                                                            \
    }

#endif
