#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include "cshim_maildrop.h"

// F_OFD_SETLK needs _GNU_SOURCE, which the Swift Glibc module does not set.
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

#include <dirent.h>
#include <unistd.h>
#include <sys/syscall.h>

long cshim_getdents64(int fd, void *buffer, unsigned long length) {
    return syscall(SYS_getdents64, fd, buffer, length);
}
