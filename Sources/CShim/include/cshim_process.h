// The master/worker process model (POP3Server's WorkerMaster): spawning workers,
// the shared scoreboard's atomics, and the kernel calls Swift cannot reach directly.
#pragma once
#include <stdint.h>
#include <sys/types.h>

/// posix_spawn(path, argv, envp) with the caller's signal mask and descriptors (those
/// without FD_CLOEXEC are inherited). posix_spawn uses clone(CLONE_VM|CLONE_VFORK), so it
/// is safe in a process that has other threads, unlike fork(). Returns 0 and the pid, or an errno.
int cshim_spawn(const char *path, char *const argv[], char *const envp[], pid_t *pid);

/// memfd_create(name, MFD_CLOEXEC) sized to `bytes`; -1 with errno on failure.
int cshim_memfd_create(const char *name, uint64_t bytes);

/// mmap(MAP_SHARED, PROT_READ|PROT_WRITE) of `bytes` of fd; NULL with errno on failure.
void *cshim_map_shared(int fd, uint64_t bytes);

/// Sequentially consistent 64-bit load/store/add on shared memory (GCC __atomic builtins):
/// the scoreboard is written by one process and read by others.
uint64_t cshim_atomic_load_u64(const uint64_t *p);
void cshim_atomic_store_u64(uint64_t *p, uint64_t value);

/// A sequence lock over a block of shared memory written by one process and read by
/// others (the workers' metrics snapshots): `seq` is odd while a write is under way.
/// Writer: publishes `length` octets of `src` into `dst` and `*length_word`.
void cshim_seqlock_write(uint64_t *seq, uint64_t *length_word, void *dst, const void *src, uint64_t length);
/// Reader: copies at most `capacity` octets into `out`; returns the length copied, or -1
/// when a write was under way or overlapped the copy (try again, or keep an older copy).
int64_t cshim_seqlock_read(const uint64_t *seq, const uint64_t *length_word, const void *src,
                           void *out, uint64_t capacity);

/// CPUs this process may run on (sched_getaffinity + CPU_COUNT, which honours taskset and
/// systemd's CPUAffinity=), else sysconf(_SC_NPROCESSORS_ONLN), at least 1.
int cshim_usable_cpus(void);

/// prctl(PR_SET_PDEATHSIG, sig): the kernel sends sig when the parent thread exits.
int cshim_set_parent_death_signal(int sig);

/// waitpid(-1, &status, WNOHANG) split up: returns the pid (0: none exited, -1: errno),
/// and whether it exited (code) or was killed (signal, core dumped).
pid_t cshim_reap_child(int *exited, int *code, int *signo, int *core_dumped);

/// Clears or sets FD_CLOEXEC on fd; 0 or -1 with errno.
int cshim_set_cloexec(int fd, int on);
