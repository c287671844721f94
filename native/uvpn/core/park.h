/* park.h: the holding port, where a non-blocking overlay connect waits for the router's answer
 * (native/uvpn/core/park.c). */
#ifndef UVPN_CORE_PARK_H
#define UVPN_CORE_PARK_H

/* Starts a non-blocking connect of the non-blocking stream socket fd to the engine's holding
 * port, a local listener whose queue is kept full, so the socket stays in SYN_SENT: no
 * readiness, SO_ERROR 0, getpeername ENOTCONN, exactly a connect in progress. 0 when fd is held
 * there; -1 (errno set) when it is not (a blocking socket, no holding port, IPV6_V6ONLY...), and
 * then fd is as it was. Leave it with connect(AF_UNSPEC) and read SO_ERROR (the ECONNRESET of a
 * disconnect in SYN_SENT), as eng_abandon does. move_high moves a new descriptor of the port's
 * out of the program's way (returns the new fd, the old one closed). */
int park_hold(int fd, int (*move_high)(int));

/* 1 when fd is one of the holding port's own descriptors (a program may not close them). */
int park_owns(int fd);

#endif
