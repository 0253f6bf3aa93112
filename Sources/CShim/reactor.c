#define _GNU_SOURCE
#include "cshim_reactor.h"
#include <errno.h>
#include <stddef.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>

// Sources/Reactor/Kernel.swift passes arrays of struct epoll_event from Swift to epoll_wait:
// the kernel's layout (packed on x86_64, where Swift must import it packed too; ReactorTests'
// KernelTests checks Swift's side).
#if defined(__x86_64__)
_Static_assert(sizeof(struct epoll_event) == 12 && offsetof(struct epoll_event, data) == 4,
               "x86_64 epoll_event is packed: 12 octets, data at 4");
#else
_Static_assert(sizeof(struct epoll_event) == 16 && offsetof(struct epoll_event, data) == 8,
               "epoll_event: 16 octets, data at 8");
#endif

_Static_assert(IP_BIND_ADDRESS_NO_PORT == CSHIM_IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT");

int cshim_accept4(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    *len = sizeof(struct sockaddr_storage);
    return accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

uint64_t cshim_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill_set(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++) sigaddset(set, signals[i]);
}

// The thread that reads each signal's signalfd. A process-directed signal goes to any thread
// that does not block it (threads started before the loop, Swift concurrency's pool); the
// handler below hands it to the loop thread, where it is blocked and so reaches the signalfd.
static pthread_t signal_loop_thread[_NSIG];

static void forward_to_loop(int signo) {
    int saved = errno;
    if (signo > 0 && signo < _NSIG) pthread_kill(signal_loop_thread[signo], signo);  // async-signal-safe
    errno = saved;
}

int cshim_signalfd_create(const int *signals, int count) {
    sigset_t set;
    fill_set(&set, signals, count);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_to_loop;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    for (int i = 0; i < count; i++) {
        if (signals[i] <= 0 || signals[i] >= _NSIG) { errno = EINVAL; return -1; }
        signal_loop_thread[signals[i]] = pthread_self();
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int cshim_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n >= 0) errno = EIO;
    return -1;
}

int cshim_unblock_signals(const int *signals, int count) {
    sigset_t set;
    fill_set(&set, signals, count);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

uint64_t cshim_heap_bytes_in_use(void) { return (uint64_t)mallinfo2().uordblks; }

int cshim_malloc_trim(void) { return malloc_trim(0); }
