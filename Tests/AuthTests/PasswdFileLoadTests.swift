import Testing
import Glibc
@testable import Auth

@Suite struct PasswdFileLoadTests {
    /// A FIFO at the passwd-file's path used to block the open (and the loop with it); a
    /// directory or a device is no passwd-file either. Each is refused at once.
    @Test func nonRegularFilesAreRefusedWithoutBlocking() throws {
        let fifo = "/tmp/authtest-fifo-\(getpid())"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        for path in [fifo, "/tmp", "/dev/zero"] {
            do {
                _ = try PasswdFile.load(path: path)
                Issue.record("\(path) was accepted")
            } catch let error as PasswdFileError {
                #expect(error.reason == "not a regular file", "\(path): \(error)")
            }
        }
    }
}
