import CShim
import Glibc

// Kernel interfaces the Reactor calls straight from Swift, without a C wrapper. Swift's Glibc
// module leaves out <sys/epoll.h>, <sys/timerfd.h> and <sys/eventfd.h>; CShim's header
// includes them, so their functions, structs and constants come through `import CShim` as
// they are (swift-nio's CNIOLinux does the same). What stays in C is what Swift cannot
// express: accept4 (declared only with _GNU_SOURCE), the signal forwarding handler, <malloc.h>.

/// epoll(7): the event bits (glibc's `enum EPOLL_EVENTS`, imported as a struct with a raw
/// value) and the calls the loop makes.
///
/// `struct epoll_event` is packed on x86_64 (12 octets, `data` at offset 4); Swift imports C
/// structs with Clang's layout, so an array of them goes to epoll_wait as it is
/// (`ReactorTests/KernelTests` checks the size and offset against the kernel ABI).
enum Epoll {
    /// EPOLLIN: readable (or a listening socket has a connection to accept).
    @inline(__always) static var input: UInt32 { UInt32(EPOLLIN.rawValue) }
    /// EPOLLOUT: writable.
    @inline(__always) static var output: UInt32 { UInt32(EPOLLOUT.rawValue) }
    /// EPOLLERR: an error is pending on the socket (always reported).
    @inline(__always) static var error: UInt32 { UInt32(EPOLLERR.rawValue) }
    /// EPOLLHUP: both directions closed (always reported).
    @inline(__always) static var hangUp: UInt32 { UInt32(EPOLLHUP.rawValue) }
    /// EPOLLRDHUP: the peer shut down writing (sent FIN).
    @inline(__always) static var readHangUp: UInt32 { UInt32(EPOLLRDHUP.rawValue) }
    /// EPOLLEXCLUSIVE (Linux 4.5): of several epoll instances waiting on one listening socket,
    /// only one is woken per connection (no thundering herd across worker processes). Only
    /// with EPOLL_CTL_ADD; a MOD of such a registration fails with EINVAL.
    @inline(__always) static var exclusive: UInt32 { UInt32(EPOLLEXCLUSIVE.rawValue) }

    /// epoll_create1(EPOLL_CLOEXEC); -1 with errno on failure.
    static func create() -> Int32 {
        epoll_create1(Int32(EPOLL_CLOEXEC))
    }

    /// epoll_ctl(epfd, op, fd, {events, data.u64 = data}); `op` is EPOLL_CTL_ADD, _MOD or _DEL
    /// (DEL ignores the event). 0, or -1 with errno.
    static func control(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) -> Int32 {
        var event = epoll_event()
        event.events = events
        event.data.u64 = data
        return epoll_ctl(epfd, op, fd, &event)
    }
}

/// timerfd(2) and eventfd(2) (their flags are anonymous C enums, imported as `Int`).
enum KernelFD {
    /// timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK|TFD_CLOEXEC); -1 with errno on failure.
    static func monotonicTimer() -> Int32 {
        timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
    }

    /// Arms the timerfd to fire once at the absolute CLOCK_MONOTONIC time `deadline`, in ns
    /// (0 would disarm it; a deadline in the past fires at once). 0, or -1 with errno.
    static func arm(timer fd: Int32, deadline: UInt64) -> Int32 {
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(deadline / 1_000_000_000)
        spec.it_value.tv_nsec = Int(deadline % 1_000_000_000)
        return timerfd_settime(fd, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    /// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC); -1 with errno on failure.
    static func event() -> Int32 {
        eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
    }
}

/// Socket calls with their flags (`SOCK_*` are glibc's `enum __socket_type`, imported as a
/// struct with a raw value).
enum Socket {
    /// SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC.
    @inline(__always) static var nonblockingStream: Int32 {
        Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
    }

    /// socket(family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0); -1 with errno on failure.
    static func tcp(family: Int32) -> Int32 {
        socket(family, nonblockingStream, 0)
    }

    /// setsockopt(fd, level, name, &value, sizeof(int)). 0, or -1 with errno.
    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) -> Int32 {
        var value = value
        return setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// TCP_NODELAY: replies go out as they are queued (the loop batches them itself).
    static func setNoDelay(_ fd: Int32) -> Int32 {
        setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
    }
}
