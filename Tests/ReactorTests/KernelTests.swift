import CShim
import Glibc
import SystemCalls
import Testing
@testable import Reactor

/// Kernel interfaces the Reactor uses from Swift without a C wrapper (Kernel.swift).
@Suite struct KernelTests {
    /// epoll_wait writes the kernel's `struct epoll_event` array into Swift's buffer: Swift must
    /// import it with the kernel's layout (packed on x86_64), or every event after the first
    /// would be read at the wrong offset. reactor.c asserts the same sizes on the C side.
    @Test func epollEventHasTheKernelLayout() {
        #if arch(x86_64)
        #expect(MemoryLayout<epoll_event>.size == 12)
        #expect(MemoryLayout<epoll_event>.stride == 12)
        #expect(MemoryLayout<epoll_event>.offset(of: \epoll_event.data) == 4)
        #else
        #expect(MemoryLayout<epoll_event>.size == 16)
        #expect(MemoryLayout<epoll_event>.offset(of: \epoll_event.data) == 8)
        #endif
    }

    /// Several ready descriptors in one epoll_wait: each event carries its own tag, so the
    /// array is read at the kernel's stride.
    @Test func epollWaitReturnsEachTagInOneBatch() throws {
        let epfd = try syscallBlocking("epoll_create1") { Epoll.create() }
        defer { closeDescriptor(epfd) }
        var pairs: [(Int32, Int32)] = []
        defer { for (a, b) in pairs { closeDescriptor(a); closeDescriptor(b) } }
        for i in 0..<5 {
            let pair = try socketPair()
            pairs.append(pair)
            try syscallBlocking("epoll_ctl(ADD)") {
                Epoll.control(epfd, EPOLL_CTL_ADD, pair.0, events: Epoll.input, data: 0xABCD_0000_0000_0000 | UInt64(i))
            }
            #expect(write(pair.1, "x", 1) == 1)
        }
        let events = UnsafeMutableBufferPointer<epoll_event>.allocate(capacity: 8)
        defer { events.deallocate() }
        let count = try syscallBlocking("epoll_wait") { epoll_wait(epfd, events.baseAddress, 8, 1000) }
        #expect(count == 5)
        let tags = Set((0..<Int(count)).map { events[$0].data.u64 })
        #expect(tags == Set((0..<5).map { 0xABCD_0000_0000_0000 | UInt64($0) }))
        #expect((0..<Int(count)).allSatisfy { events[$0].events & Epoll.input != 0 })
    }

    @Test func timerFDFiresAtItsAbsoluteDeadline() throws {
        let fd = try syscallBlocking("timerfd_create") { KernelFD.monotonicTimer() }
        defer { closeDescriptor(fd) }
        var expirations: UInt64 = 0
        #expect(try syscall("read") { read(fd, &expirations, 8) } == .wouldBlock)
        try syscallBlocking("timerfd_settime") { KernelFD.arm(timer: fd, deadline: cshim_monotonic_ns() + 20_000_000) }
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(Glibc.poll(&poll, 1, 5000) == 1)
        #expect(try syscall("read") { read(fd, &expirations, 8) } == .processed(8))
        #expect(expirations == 1)
    }
}

/// Numbers Swift spells as literals (enum raw values cannot name a C constant) that C reads
/// as its own constants: each must be the C constant it stands for.
@Suite struct ShimConstantTests {
    @Test func tlsVersionsAreTheShimsNumbers() {
        #expect(Int(TLSVersion.tls1_1.rawValue) == Int(CSHIM_TLS_V1_1))
        #expect(Int(TLSVersion.tls1_2.rawValue) == Int(CSHIM_TLS_V1_2))
        #expect(Int(TLSVersion.tls1_3.rawValue) == Int(CSHIM_TLS_V1_3))
    }
}
