import Glibc

/// Waits (bounded: 10 s) until the filesystem's clock is past the last change of the Maildir
/// `maildir`'s `new/` and `cur/`, as it is between a delivery and a real login: a login index
/// written in the timestamp tick of the folders' last change is rightly not trusted by the next
/// login (`LoginIndex`'s rule), so tests that want a trusted index wait for the tick to pass.
/// Probes by creating a file in the root (not in `new/` or `cur/`) until its change time is
/// later than theirs. Returns whether it got there.
@discardableResult
public func waitForFileSystemClock(maildir: String) -> Bool {
    func changeTime(_ path: String) -> (Int, Int)? {
        var st = stat()
        return stat(path, &st) == 0 ? (st.st_ctim.tv_sec, st.st_ctim.tv_nsec) : nil
    }
    let newest = [changeTime(maildir + "/new"), changeTime(maildir + "/cur")].compactMap { $0 }.max { $0 < $1 } ?? (0, 0)
    let probe = maildir + "/.clock-probe"
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    let deadline = ts.tv_sec + 10
    repeat {
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd) }
        let now = changeTime(probe)
        unlink(probe)
        if let now, newest < now { return true }
        usleep(1_000)
        clock_gettime(CLOCK_MONOTONIC, &ts)
    } while ts.tv_sec < deadline
    return false
}
