#define _GNU_SOURCE
#include <string.h>
#include "cshim_process.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int cshim_spawn(const char *path, char *const argv[], char *const envp[], pid_t *pid) {
    return posix_spawn(pid, path, NULL, NULL, argv, envp);
}

int cshim_memfd_create(const char *name, uint64_t bytes) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void *cshim_map_shared(int fd, uint64_t bytes) {
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

uint64_t cshim_atomic_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

void cshim_atomic_store_u64(uint64_t *p, uint64_t value) { __atomic_store_n(p, value, __ATOMIC_SEQ_CST); }

// The classic sequence lock (as the kernel's seqcount): the writer makes the count odd,
// fences, writes, fences, makes it even; the reader reads the count, copies, fences and
// reads it again, and keeps the copy only if the count was even and did not change.
void cshim_seqlock_write(uint64_t *seq, uint64_t *length_word, void *dst, const void *src, uint64_t length) {
    uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
    __atomic_store_n(seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(dst, src, length);
    __atomic_store_n(length_word, length, __ATOMIC_RELAXED);
    __atomic_store_n(seq, s + 2, __ATOMIC_RELEASE);
}

int64_t cshim_seqlock_read(const uint64_t *seq, const uint64_t *length_word, const void *src,
                           void *out, uint64_t capacity) {
    uint64_t before = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
    if (before & 1) return -1;
    uint64_t length = __atomic_load_n(length_word, __ATOMIC_RELAXED);
    if (length > capacity) return -1;
    memcpy(out, src, length);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint64_t after = __atomic_load_n(seq, __ATOMIC_RELAXED);
    return before == after ? (int64_t)length : -1;
}

int cshim_usable_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

int cshim_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }

pid_t cshim_reap_child(int *exited, int *code, int *signo, int *core_dumped) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return pid;
    *exited = WIFEXITED(status);
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    *signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
#ifdef WCOREDUMP
    *core_dumped = WIFSIGNALED(status) ? (WCOREDUMP(status) != 0) : 0;
#else
    *core_dumped = 0;
#endif
    return pid;
}

int cshim_set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, flags);
}
