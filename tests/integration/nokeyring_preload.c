/* SPDX-License-Identifier: Apache-2.0 */
/* LD_PRELOAD shim for t_share_token.sh: a process whose kernel keyring system calls fail, as in a
 * container whose seccomp profile refuses them (Docker's default: EPERM) or a kernel without keys
 * (ENOSYS). add_key(2), keyctl(2) and request_key(2) made through syscall(3) (as src/kv/keyring.c
 * makes them) fail with NOKEYRING_ERRNO ("EPERM", "EACCES"; default ENOSYS); every other system
 * call goes through. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

long syscall(long n, ...)
{
  static long (*real)(long, ...);
  long a[6];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < 6; i++)
    a[i] = va_arg(ap, long); /* as glibc's own wrapper: six argument registers, used or not */
  va_end(ap);
  if (n == SYS_add_key || n == SYS_keyctl || n == SYS_request_key) {
    const char *e = getenv("NOKEYRING_ERRNO");
    errno = e && strcmp(e, "EPERM") == 0 ? EPERM : e && strcmp(e, "EACCES") == 0 ? EACCES : ENOSYS;
    return -1;
  }
  if (!real)
    real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
