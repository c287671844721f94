/* elfkind.h: is an executable statically linked? Parses the first bytes of a file (no I/O, so
 * each library reads them with its own real-libc table, even in a vfork child): an ELF
 * executable without PT_INTERP is static (also static-pie); a "#!" script names its
 * interpreter, which the caller looks at in turn. Used by the exec wrappers of libuvpn.so
 * (uvpn/wrap/staticexec.c) and libxufs.so (xufs/wrap/staticexec.c) to run static programs
 * under the seccomp supervisor. */
#ifndef MYRT_ELFKIND_H
#define MYRT_ELFKIND_H

#include <stddef.h>

/* How much of the file elf_kind needs: the ELF header and the program headers must be in it. */
#define ELFKIND_HEAD 4096

enum { ELF_OTHER = 0, ELF_STATIC = 1, ELF_SCRIPT = 2 };

/* The kind of the file whose first n bytes are h: ELF_STATIC, ELF_SCRIPT (the interpreter's path,
 * NUL-terminated, in interp of cap bytes) or ELF_OTHER (dynamic, unusual, or not an executable). */
int elf_kind(const unsigned char *h, size_t n, char *interp, size_t cap);

#endif
