/* The loopback adb device's arm64 mode (tests/adb_loopback_device.py): preloaded into every shell command
 * it runs, so that an aarch64 ELF started by any of them runs under qemu-user, as if this x86-64 host were
 * an arm64 phone (there is no binfmt_misc here). Other programs are exec'd unchanged.
 *
 * LOOPBACK_QEMU is the qemu-aarch64 binary, LOOPBACK_QEMU_CPU its -cpu model ("max,sme=off": with SME on,
 * qemu 7.2 makes XNNPACK take SME kernels that give wrong int8 outputs). LD_PRELOAD is kept from the
 * emulated program (-U): it names this x86-64 library. posix_spawn and the execl family are not covered:
 * sh, env and taskset use execve/execvp. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;
typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int is_aarch64_elf(const char *path) {
  unsigned char h[20];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, h, sizeof h);
  close(fd);
  return n == (ssize_t)sizeof h && memcmp(h, ELFMAG, SELFMAG) == 0 && h[EI_CLASS] == ELFCLASS64 &&
         h[EI_DATA] == ELFDATA2LSB && (h[18] | h[19] << 8) == EM_AARCH64;
}

int execve(const char *path, char *const argv[], char *const envp[]) {
  static execve_fn real;
  if (!real) real = (execve_fn)dlsym(RTLD_NEXT, "execve");
  const char *qemu = getenv("LOOPBACK_QEMU");
  if (!qemu || !is_aarch64_elf(path)) return real(path, argv, envp);
  const char *cpu = getenv("LOOPBACK_QEMU_CPU");
  size_t argc = 0;
  while (argv[argc]) argc++;
  char **args = malloc((argc + 10) * sizeof *args);
  if (!args) { errno = ENOMEM; return -1; }
  size_t i = 0;
  args[i++] = (char *)qemu;
  args[i++] = "-cpu";
  args[i++] = (char *)(cpu ? cpu : "max,sme=off");
  args[i++] = "-U";
  args[i++] = "LD_PRELOAD";
  args[i++] = "-0";
  args[i++] = argc ? argv[0] : (char *)path;
  args[i++] = (char *)path;
  for (size_t j = 1; j < argc; j++) args[i++] = argv[j];
  args[i] = NULL;
  real(qemu, args, envp);
  int saved = errno;
  free(args);
  errno = saved;
  return -1;
}

/* glibc's execv/execvp call its internal __execve, which preloading cannot replace: route them here */
int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[]) {
  if (strchr(file, '/')) return execve(file, argv, envp);
  const char *dirs = getenv("PATH");
  if (!dirs) dirs = "/bin:/usr/bin";
  int err = ENOENT;
  for (const char *p = dirs;; p++) {
    const char *end = strchrnul(p, ':');
    char full[4096];
    size_t len = (size_t)(end - p);
    if (len + strlen(file) + 2 < sizeof full) {
      memcpy(full, p, len);
      full[len] = '/';
      strcpy(full + len + 1, file);
      execve(len ? full : file, argv, envp);
      if (errno != ENOENT && errno != ENOTDIR) err = errno;
    }
    if (!*end) break;
    p = end;
  }
  errno = err;
  return -1;
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }
