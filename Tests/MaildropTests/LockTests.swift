import CShim
import Glibc
import Testing
@testable import Maildrop

@Suite struct LockTests {
    @Test func secondOpenInSameProcessIsInUseUntilClose() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("x\n".utf8), fileName: "1700000000.M0P1.host")
        let first = try Maildrop.open(path: f.root)
        #expect(throws: MaildropError.inUse) { try Maildrop.open(path: f.root) }
        // The failed attempt must not disturb the holder.
        #expect(first.isOpen)
        #expect(throws: MaildropError.inUse) { try Maildrop.open(path: f.root) }
        first.close()
        first.close()  // idempotent
        let second = try Maildrop.open(path: f.root)
        #expect(second.count == 1)
    }

    @Test func lockIsReleasedOnDeinit() throws {
        let f = try Fixture()
        do {
            let held = try Maildrop.open(path: f.root)
            #expect(held.isOpen)
        }
        let again = try Maildrop.open(path: f.root)
        #expect(again.isOpen)
    }

    @Test func anotherOpenFileDescriptionHoldingTheLockConflicts() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root).close()
        let fd = open(f.root + "/" + Maildrop.lockFileName, O_RDWR | O_CLOEXEC)
        #expect(fd >= 0)
        #expect(cshim_ofd_trylock(fd) == 0)
        #expect(throws: MaildropError.inUse) { try Maildrop.open(path: f.root) }
        close(fd)
        try Maildrop.open(path: f.root).close()
    }

    @Test func lockHeldByChildProcessIsReleasedWhenItIsKilled() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root).close()
        // Everything the child touches is prepared before fork: after fork in
        // a threaded process only async-signal-safe calls are allowed.
        guard let cpath = strdup(f.root + "/" + Maildrop.lockFileName) else { return }
        defer { free(cpath) }
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let writeEnd = fds[1]
        let pid = fork()
        if pid == 0 {
            // The child shares every open file description of this (multi-threaded) test
            // process, including lock files that tests running in parallel hold: an OFD lock
            // would then outlive its test until this child is killed. Keep only the pipe.
            for other in Int32(3)..<Int32(4096) where other != writeEnd { close(other) }
            let fd = open(cpath, O_RDWR)
            var ok: UInt8 = (fd >= 0 && cshim_ofd_trylock(fd) == 0) ? 1 : 0
            _ = write(writeEnd, &ok, 1)
            while true { pause() }
        }
        #expect(pid > 0)
        close(fds[1])
        var status: UInt8 = 0
        // Blocks until the child reports; returns 0 if it died first.
        #expect(read(fds[0], &status, 1) == 1)
        close(fds[0])
        #expect(status == 1)
        #expect(throws: MaildropError.inUse) { try Maildrop.open(path: f.root) }
        kill(pid, SIGKILL)
        var wstatus: Int32 = 0
        #expect(waitpid(pid, &wstatus, 0) == pid)
        // The kernel dropped the lock with the process.
        let md = try Maildrop.open(path: f.root)
        #expect(md.isOpen)
    }
}
