#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "cshim_maildrop.h"

// The record layout Swift reads (cshim_maildrop.h): glibc's dirent64 is the kernel's
// linux_dirent64.
_Static_assert(offsetof(struct dirent64, d_reclen) == CSHIM_DIRENT64_RECLEN_OFFSET, "dirent64.d_reclen");
_Static_assert(sizeof(((struct dirent64 *)0)->d_reclen) == 2, "dirent64.d_reclen is a u16");
_Static_assert(offsetof(struct dirent64, d_type) == CSHIM_DIRENT64_TYPE_OFFSET, "dirent64.d_type");
_Static_assert(sizeof(((struct dirent64 *)0)->d_type) == 1, "dirent64.d_type is a u8");
_Static_assert(offsetof(struct dirent64, d_name) == CSHIM_DIRENT64_NAME_OFFSET, "dirent64.d_name");
_Static_assert(UTIME_NOW == CSHIM_UTIME_NOW && UTIME_OMIT == CSHIM_UTIME_OMIT, "UTIME_NOW/UTIME_OMIT");

int cshim_ofd_trylock(int fd) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;  // whole file
    fl.l_pid = 0;  // required to be 0 for OFD locks
    return fcntl(fd, F_OFD_SETLK, &fl);
}

long cshim_getdents64(int fd, void *buffer, unsigned long length) {
    return syscall(SYS_getdents64, fd, buffer, length);
}
