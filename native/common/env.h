/* env.h: where the overlay code reads its environment. libuvpn.so reads the process's own
 * environment; the seccomp supervisor (libmyrt.so) runs inside another process (Deno) on behalf
 * of a child, so it reads the child's environment block instead. */
#ifndef UVPN_ENV_H
#define UVPN_ENV_H

/* From now on, uvpn_getenv reads envp (NULL-terminated "NAME=value" strings, which must stay
 * valid) instead of the process environment. Call before any other overlay function. */
void uvpn_env_use(char *const *envp);

/* The value of name, or NULL. */
const char *uvpn_getenv(const char *name);

#endif
