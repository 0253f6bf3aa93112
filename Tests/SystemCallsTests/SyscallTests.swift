import Glibc
import SystemCalls
import Testing

/// The wrapper family's rules (Sources/SystemCalls/Syscall.swift): EINTR retried, EAGAIN a
/// value, any other errno thrown with the call's name.
@Suite struct SyscallTests {
    /// A fake call that fails with the given errnos in turn, then returns `result`.
    final class Script {
        var failures: [Int32]
        let result: Int32
        var calls = 0
        init(failing failures: [Int32], then result: Int32) {
            self.failures = failures
            self.result = result
        }
        func run() -> Int32 {
            calls += 1
            if failures.isEmpty { return result }
            Glibc.errno = failures.removeFirst()
            return -1
        }
    }

    @Test func eintrIsRetriedUntilTheCallAnswers() throws {
        let script = Script(failing: [EINTR, EINTR, EINTR], then: 7)
        #expect(try syscall("fake") { script.run() } == .processed(7))
        #expect(script.calls == 4)
    }

    @Test func eagainIsAValueAndAnErrorOnlyForBlockingCalls() throws {
        let script = Script(failing: [EINTR, EAGAIN], then: 1)
        #expect(try syscall("fake") { script.run() } == .wouldBlock)
        #expect(script.calls == 2)
        let again = Script(failing: [EWOULDBLOCK], then: 1)
        #expect(throws: SyscallError(errno: EAGAIN, call: "fake")) { try syscallBlocking("fake") { again.run() } }
    }

    @Test func otherErrnosAreThrownWithTheCallsName() throws {
        let script = Script(failing: [ECONNRESET], then: 1)
        do {
            _ = try syscall("recv") { script.run() }
            Issue.record("no error thrown")
        } catch {
            #expect(error.errno == ECONNRESET)
            #expect(error.call == "recv")
            #expect(error.description == "recv: \(String(cString: strerror(ECONNRESET))) (errno \(ECONNRESET))")
        }
        #expect(script.calls == 1)
    }

    @Test func realCallsNonblockingPipeAndMissingFile() throws {
        var fds: [Int32] = [-1, -1]
        try syscallBlocking("pipe") { pipe(&fds) }
        defer { closeDescriptor(fds[0]); closeDescriptor(fds[1]) }
        try syscallBlocking("fcntl(F_SETFL)") { fcntl(fds[0], F_SETFL, O_NONBLOCK) }
        var byte: UInt8 = 0
        #expect(try syscall("read") { read(fds[0], &byte, 1) } == .wouldBlock)
        #expect(try syscall("write") { write(fds[1], "x", 1) } == .processed(1))
        #expect(try syscall("read") { read(fds[0], &byte, 1) } == .processed(1))
        #expect(byte == UInt8(ascii: "x"))
        #expect(throws: SyscallError(errno: ENOENT, call: "open")) {
            try syscallBlocking("open") { open("/nonexistent-pop3d-test/file", O_RDONLY | O_CLOEXEC) }
        }
    }

    @Test func sleepThreadWaitsAtLeastTheTimeAsked() {
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        sleepThread(seconds: 0.05)
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let elapsed = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
        #expect(elapsed >= 0.05)
    }
}
