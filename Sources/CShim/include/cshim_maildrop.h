// Maildrop's C: Glibc hides open file description (OFD) locks behind
// _GNU_SOURCE, which Swift's Glibc module does not define.
#pragma once

/// Takes a nonblocking exclusive OFD write lock on the whole file behind `fd`.
/// Exists in C because F_OFD_SETLK is only visible with _GNU_SOURCE. OFD locks
/// (unlike classic POSIX fcntl locks) belong to the open file description, so
/// two opens in one process conflict, and the kernel drops them when the last
/// descriptor closes or the process dies. Returns 0, or -1 with errno set
/// (EAGAIN/EACCES when another description holds the lock).
int cshim_ofd_trylock(int fd);

/// getdents64(2) on a directory descriptor. Exists in C because glibc declares getdents64
/// only with _GNU_SOURCE; readdir(3) needs a DIR* (fdopendir), which costs a dup, an fstat,
/// two fcntls and an lseek per listing. Returns bytes read, 0 at the end, -1 with errno.
long cshim_getdents64(int fd, void *buffer, unsigned long length);
