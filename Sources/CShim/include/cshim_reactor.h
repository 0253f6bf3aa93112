// The reactor's kernel interfaces. Swift's Glibc module leaves out <sys/epoll.h>,
// <sys/timerfd.h> and <sys/eventfd.h>: they are included here so that Swift calls epoll_*,
// timerfd_* and eventfd and uses struct epoll_event, EPOLL* and EPOLL_CTL_* as they are
// (Sources/Reactor/Kernel.swift). Functions are in C only where Swift cannot express them:
// a declaration behind _GNU_SOURCE (accept4), a signal handler, <malloc.h>.
#pragma once
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <netinet/in.h>

/// IP_BIND_ADDRESS_NO_PORT (Linux 4.2), which <netinet/in.h> declares only with _GNU_SOURCE
/// (reactor.c asserts the value).
enum { CSHIM_IP_BIND_ADDRESS_NO_PORT = 24 };

/// accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC: glibc declares accept4 only with _GNU_SOURCE,
/// which Swift's Glibc module does not define. Sets *len to sizeof *addr first.
int cshim_accept4(int fd, struct sockaddr_storage *addr, socklen_t *len);

/// CLOCK_MONOTONIC in nanoseconds (the loop's clock; one call where Swift would need a
/// timespec and arithmetic at every use).
uint64_t cshim_monotonic_ns(void);

/// Blocks the signals in the calling thread, forwards them there from any other thread that
/// takes them (sigaction with a C handler that calls pthread_kill), and returns a nonblocking
/// signalfd; -1 with errno on failure.
int cshim_signalfd_create(const int *signals, int count);
/// Reads one signalfd_siginfo; returns the signal number, 0 on EAGAIN, -1 on error (errno set).
int cshim_signalfd_read(int fd);
/// Unblocks signals (tests restore the mask).
int cshim_unblock_signals(const int *signals, int count);

/// Heap bytes in use (mallinfo2().uordblks): <malloc.h> is not in Swift's Glibc module. For idle-memory measurements.
uint64_t cshim_heap_bytes_in_use(void);
/// malloc_trim(0) (<malloc.h>, not in Swift's Glibc module): returns free heap pages to the
/// kernel after a burst of freed output chunks; 1 when memory was released.
int cshim_malloc_trim(void);
