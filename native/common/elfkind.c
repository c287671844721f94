/* elfkind.c: static ELF detection on a file's first bytes (see elfkind.h). */
#include "common/elfkind.h"

#include <elf.h>
#include <string.h>

int elf_kind(const unsigned char *h, size_t n, char *interp, size_t cap)
{
    if (n >= 4 && h[0] == '#' && h[1] == '!') {
        size_t i = 2, k = 0;
        while (i < n && (h[i] == ' ' || h[i] == '\t')) i++;
        while (i < n && h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && k + 1 < cap) interp[k++] = (char)h[i++];
        if (cap) interp[k] = 0;
        return k > 0 ? ELF_SCRIPT : ELF_OTHER;
    }
    if (n < sizeof(Elf64_Ehdr) || memcmp(h, ELFMAG, SELFMAG) || h[EI_CLASS] != ELFCLASS64) return ELF_OTHER;
    Elf64_Ehdr eh;
    memcpy(&eh, h, sizeof eh);
    if ((eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > (uint64_t)n)
        return ELF_OTHER; /* unusual: leave it to the kernel */
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, h + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_INTERP) return ELF_OTHER;
    }
    return ELF_STATIC;
}
