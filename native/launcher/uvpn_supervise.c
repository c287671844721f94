/* uvpn_supervise.c: the launcher executable, a main over libmyrt.so's myrt_main
 * (supervisor/launch.c): runs a program under the seccomp supervisor without Deno. Built into
 * build/uvpn_supervise beside libmyrt.so, which it finds through its RUNPATH ($ORIGIN). */
int myrt_main(int argc, char **argv);

int main(int argc, char **argv) { return myrt_main(argc, argv); }
