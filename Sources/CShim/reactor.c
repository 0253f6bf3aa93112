#define _GNU_SOURCE
#include "cshim_reactor.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

_Static_assert(EPOLLIN == 0x001 && EPOLLOUT == 0x004 && EPOLLERR == 0x008 && EPOLLHUP == 0x010 && EPOLLRDHUP == 0x2000,
               "epoll constants mirrored in cshim_reactor.h");

int cshim_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cshim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int cshim_epoll_wait(int epfd, cshim_epoll_event *events, int maxevents, int timeout_ms) {
    enum { BATCH = 256 };
    struct epoll_event raw[BATCH];
    if (maxevents > BATCH) maxevents = BATCH;
    int n = epoll_wait(epfd, raw, maxevents, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

int cshim_epoll_ctl_add(void) { return EPOLL_CTL_ADD; }
int cshim_epoll_ctl_mod(void) { return EPOLL_CTL_MOD; }
int cshim_epoll_ctl_del(void) { return EPOLL_CTL_DEL; }

int cshim_accept4(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    *len = sizeof(struct sockaddr_storage);
    return accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cshim_tcp_socket(int family) { return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

int cshim_socketpair_stream(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

int cshim_setsockopt_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

int cshim_set_reuseaddr(int fd) { return cshim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1); }
int cshim_set_reuseport(int fd) { return cshim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1); }
int cshim_set_tcp_nodelay(int fd) { return cshim_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1); }
int cshim_set_ipv6_only(int fd) { return cshim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1); }

int cshim_set_buffer_sizes(int fd, int sndbuf, int rcvbuf) {
    if (sndbuf > 0 && cshim_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUF, sndbuf) != 0) return -1;
    if (rcvbuf > 0 && cshim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf) != 0) return -1;
    return 0;
}

int cshim_socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}

int cshim_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int cshim_timerfd_arm(int fd, uint64_t deadline_ns) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_value.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    spec.it_value.tv_nsec = (long)(deadline_ns % 1000000000ull);
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
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

int cshim_eventfd_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cshim_errno(void) { return errno; }

#include <malloc.h>
uint64_t cshim_heap_bytes_in_use(void) { return (uint64_t)mallinfo2().uordblks; }

/// malloc_trim(0): gives free heap pages back to the kernel (glibc keeps freed small blocks).
int cshim_malloc_trim(void) { return malloc_trim(0); }
