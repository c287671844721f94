/* env.c: the environment the overlay code reads (see env.h). */
#include "common/env.h"

#include <stdlib.h>
#include <string.h>

static char *const *override;

void uvpn_env_use(char *const *envp) { override = envp; }

const char *uvpn_getenv(const char *name)
{
    if (!override) return getenv(name);
    size_t n = strlen(name);
    for (char *const *e = override; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}
