// Maildrop's C: calls glibc declares only with _GNU_SOURCE, which Swift's Glibc module does
// not define (OFD locks, getdents64), and the layout of what getdents64 returns.
#pragma once

/// Takes a nonblocking exclusive OFD write lock on the whole file behind `fd` (opened for
/// writing). F_OFD_SETLK is only visible with _GNU_SOURCE. OFD locks (unlike classic POSIX
/// fcntl locks) belong to the open file description, so two opens in one process conflict,
/// and the kernel drops them when the last descriptor closes or the process dies. Returns 0,
/// or -1 with errno set (EAGAIN/EACCES when another description holds the lock).
int cshim_ofd_trylock(int fd);

/// getdents64(2) on a directory descriptor. Exists in C because glibc declares getdents64
/// only with _GNU_SOURCE; readdir(3) needs a DIR* (fdopendir), which costs a dup, an fstat,
/// two fcntls and an lseek per listing. Returns bytes read, 0 at the end, -1 with errno.
long cshim_getdents64(int fd, void *buffer, unsigned long length);

/// Where Swift (`Sys.listDirectory`) reads the records getdents64 returns: the kernel's
/// `struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }`,
/// which is glibc's `struct dirent64` (maildrop.c asserts each offset).
enum {
    CSHIM_DIRENT64_RECLEN_OFFSET = 16,  // u16 d_reclen: length of this record, padding included
    CSHIM_DIRENT64_TYPE_OFFSET = 18,    // u8 d_type: DT_REG, DT_DIR, ... or DT_UNKNOWN
    CSHIM_DIRENT64_NAME_OFFSET = 19,    // char d_name[]: NUL-terminated
};

/// `UTIME_NOW` and `UTIME_OMIT` of <sys/stat.h> for utimensat/futimens, which Swift's Glibc
/// module does not import (they are defined only with _GNU_SOURCE or POSIX 2008).
enum {
    CSHIM_UTIME_NOW = (1 << 30) - 1,
    CSHIM_UTIME_OMIT = (1 << 30) - 2,
};
