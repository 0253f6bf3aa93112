// Kernel interfaces of the reactor that Swift cannot call cleanly: the packed
// epoll_event, flag macros, sigset_t manipulation and fixed-size kernel structs.
#pragma once
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

/// Unpacked mirror of `struct epoll_event` (packed on x86_64, which Swift cannot import faithfully).
typedef struct {
    uint32_t events;
    uint64_t data;
} cshim_epoll_event;

// EPOLL* are enum constants re-#defined to themselves, which Swift does not import as integers.
static const uint32_t CSHIM_EPOLLIN = 0x001;
static const uint32_t CSHIM_EPOLLOUT = 0x004;
static const uint32_t CSHIM_EPOLLERR = 0x008;
static const uint32_t CSHIM_EPOLLHUP = 0x010;
static const uint32_t CSHIM_EPOLLRDHUP = 0x2000;
/// EPOLLEXCLUSIVE (Linux 4.5): of several epoll instances waiting on one listening socket,
/// only one is woken per connection (no thundering herd across worker processes).
static const uint32_t CSHIM_EPOLLEXCLUSIVE = 1u << 28;

/// epoll_create1(EPOLL_CLOEXEC): the flag is a macro over an enum.
int cshim_epoll_create(void);
/// epoll_ctl with the packed struct built here; events 0 with op ADD is allowed.
int cshim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// epoll_wait into the packed kernel array, copied out to the unpacked array.
int cshim_epoll_wait(int epfd, cshim_epoll_event *events, int maxevents, int timeout_ms);
/// EPOLL_CTL_* constants (macros in the header).
int cshim_epoll_ctl_add(void);
int cshim_epoll_ctl_mod(void);
int cshim_epoll_ctl_del(void);

/// accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC (flag macros over an enum).
int cshim_accept4(int fd, struct sockaddr_storage *addr, socklen_t *len);
/// socket(family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0): SOCK_* are an enum Swift imports awkwardly.
int cshim_tcp_socket(int family);
/// socketpair(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) for tests and internal pipes.
int cshim_socketpair_stream(int fds[2]);
/// setsockopt with an int value; the option names are macros.
int cshim_setsockopt_int(int fd, int level, int name, int value);
/// Socket option selectors as values so Swift need not know SOL_SOCKET/IPPROTO_* macros.
int cshim_set_reuseaddr(int fd);
int cshim_set_reuseport(int fd);
int cshim_set_tcp_nodelay(int fd);
int cshim_set_ipv6_only(int fd);
/// Shrinks SO_SNDBUF/SO_RCVBUF (tests use it to provoke EAGAIN quickly).
int cshim_set_buffer_sizes(int fd, int sndbuf, int rcvbuf);
/// getsockopt(SO_ERROR) for connect completion.
int cshim_socket_error(int fd);

/// timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK|TFD_CLOEXEC).
int cshim_timerfd_create(void);
/// Arms the timerfd to an absolute CLOCK_MONOTONIC deadline in ns (0 disarms); itimerspec is clumsy in Swift.
int cshim_timerfd_arm(int fd, uint64_t deadline_ns);
/// CLOCK_MONOTONIC in nanoseconds.
uint64_t cshim_monotonic_ns(void);

/// Blocks the signals in the calling thread, forwards them there from any other thread that takes
/// them (sigaction + pthread_kill), and returns a nonblocking signalfd (sigset_t is macros in C).
int cshim_signalfd_create(const int *signals, int count);
/// Reads one signalfd_siginfo; returns the signal number, 0 on EAGAIN, -1 on error (errno set).
int cshim_signalfd_read(int fd);
/// Unblocks signals (tests restore the mask).
int cshim_unblock_signals(const int *signals, int count);

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC).
int cshim_eventfd_create(void);

/// errno as a function (Swift sees Glibc's errno but this keeps C and Swift in one place).
int cshim_errno(void);

/// Heap bytes in use (mallinfo2().uordblks): <malloc.h> is not in Swift's Glibc module. For idle-memory measurements.
uint64_t cshim_heap_bytes_in_use(void);
/// malloc_trim(0) (<malloc.h>, not in Swift's Glibc module): returns free heap pages to the
/// kernel after a burst of freed output chunks; 1 when memory was released.
int cshim_malloc_trim(void);
