/* staticexe.c: static executables and the launcher's command line (see staticexe.h). */
#include "common/staticexe.h"
#include "common/real.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HEAD 4096 /* the ELF header and program headers must be in the first 4 KiB */

static int is_static(const char *path, int depth)
{
    unsigned char h[HEAD];
    int fd = real.open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = real.read(fd, h, sizeof h);
    real.close(fd);
    if (n >= 4 && h[0] == '#' && h[1] == '!' && depth < 2) {
        char interp[PATH_MAX];
        ssize_t i = 2, k = 0;
        while (i < n && (h[i] == ' ' || h[i] == '\t')) i++;
        while (i < n && h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && k < (ssize_t)sizeof interp - 1)
            interp[k++] = (char)h[i++];
        interp[k] = 0;
        return k > 0 && is_static(interp, depth + 1);
    }
    if (n < (ssize_t)sizeof(Elf64_Ehdr) || memcmp(h, ELFMAG, SELFMAG) || h[EI_CLASS] != ELFCLASS64) return 0;
    Elf64_Ehdr eh;
    memcpy(&eh, h, sizeof eh);
    if ((eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > (uint64_t)n)
        return 0; /* unusual: leave it to the kernel */
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, h + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_INTERP) return 0;
    }
    return 1;
}

int sx_is_static(const char *path)
{
    return is_static(path, 0);
}

void sx_find_launcher(const void *addr, char *out, size_t cap)
{
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname) return;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%.*s/uvpn_supervise", (int)(slash - info.dli_fname), info.dli_fname);
    if (n > 0 && (size_t)n < sizeof path && (size_t)n < cap &&
        (real_init(), real.syscall(SYS_faccessat, AT_FDCWD, path, X_OK)) == 0) /* raw: the preloads wrap access */ memcpy(out, path, (size_t)n + 1);
}

const char *sx_env(char *const envp[], const char *name)
{
    size_t n = strlen(name);
    for (char *const *p = envp; p && *p; p++)
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=') return *p + n + 1;
    return NULL;
}

void sx_argv(const char *launcher, const char *const *opts, const char *path, char *const argv[], size_t argc,
             char **out)
{
    size_t k = 0;
    out[k++] = (char *)launcher;
    for (int i = 0; opts[i] && i < 4; i++) out[k++] = (char *)opts[i];
    out[k++] = (char *)"--";
    out[k++] = (char *)path;
    if (argc == 0) out[k++] = (char *)path; /* argv[0] of an empty argv, as the kernel would give */
    for (size_t i = 0; i < argc; i++) out[k++] = argv[i];
    out[k] = NULL;
}
