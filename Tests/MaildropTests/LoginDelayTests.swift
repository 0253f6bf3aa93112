import Glibc
import Testing
@testable import Maildrop

/// RFC 2449 LOGIN-DELAY kept in the modification time of the maildrop's lock file
/// (`Maildrop+LoginDelay.swift`): refused within the delay, allowed after it, never a lockout
/// longer than the delay whatever the record holds, and the lock released on refusal.
@Suite struct LoginDelayTests {
    func lockPath(_ f: Fixture) -> String { f.root + "/" + Maildrop.lockFileName }

    /// The lock file's modification time.
    static func mtime(_ path: String) -> timespec {
        var st = stat()
        guard stat(path, &st) == 0 else { return timespec() }
        return st.st_mtim
    }

    /// Sets the lock file's modification time to now + `offset` seconds (negative: the past),
    /// standing in for time passing, a clock stepped back or another host's clock ahead.
    static func setMtime(_ path: String, offset: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var times = [now, timespec(tv_sec: now.tv_sec + offset, tv_nsec: now.tv_nsec)]
        _ = utimensat(AT_FDCWD, path, &times, 0)
    }

    static func wallSeconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now.tv_sec
    }

    /// The `.loginDelay` refusal's seconds left, nil for success or another outcome.
    static func refusal(_ body: () throws(MaildropError) -> Maildrop) -> Int? {
        do throws(MaildropError) {
            _ = try body()
            return nil
        } catch {
            if case .loginDelay(let left) = error { return left }
            return nil
        }
    }

    @Test func secondLoginWithinTheDelayIsRefusedAndTheRefusalReleasesTheLock() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("x\n".utf8), fileName: "1700000000.M0P1.host")
        // First login ever: the lock file is created by this open, which is no previous login.
        let first = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        #expect(first.count == 1 && first.statistics.loginRecordError == nil)
        // Held: [IN-USE] wins over LOGIN-DELAY.
        #expect(throws: MaildropError.inUse) { try Maildrop.open(path: f.root, loginDelaySeconds: 60) }
        first.close()
        let left = Self.refusal { () throws(MaildropError) in try Maildrop.open(path: f.root, loginDelaySeconds: 60) }
        #expect(left != nil && (59...60).contains(left ?? 0))
        // The refusal held nothing: another refusal (not IN-USE), and a session without the
        // delay opens it at once.
        #expect(Self.refusal { () throws(MaildropError) in try Maildrop.open(path: f.root, loginDelaySeconds: 60) } != nil)
        let third = try Maildrop.open(path: f.root)
        #expect(third.isOpen && third.count == 1)
    }

    @Test func loginAfterTheDelayIsAllowedAndRecordsNow() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root, loginDelaySeconds: 60).close()
        let path = lockPath(f)
        Self.setMtime(path, offset: -61)
        let before = Self.wallSeconds()
        let drop = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        #expect(drop.statistics.loginRecordError == nil)
        let recorded = Self.mtime(path).tv_sec
        #expect(recorded >= before && recorded <= Self.wallSeconds())
        drop.close()
        // One second short of the delay: still refused, with 1 s left (rounded up).
        Self.setMtime(path, offset: -59)
        let left = Self.refusal { () throws(MaildropError) in try Maildrop.open(path: f.root, loginDelaySeconds: 60) }
        #expect(left == 1)
    }

    @Test func delayZeroNeverRefusesAndRecordsNothing() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root, loginDelaySeconds: 3600).close()
        for _ in 0..<3 { try Maildrop.open(path: f.root).close() }
        try Maildrop.open(path: f.root, loginDelaySeconds: 0).close()
        let path = lockPath(f)
        Self.setMtime(path, offset: -7200)
        let old = Self.mtime(path).tv_sec
        try Maildrop.open(path: f.root).close()
        #expect(Self.mtime(path).tv_sec == old)
    }

    @Test func aRecordInTheFutureWithinTheDelayIsMovedToNowSoTheRefusalEndsWithinTheDelay() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root, loginDelaySeconds: 60).close()
        let path = lockPath(f)
        // Another host's clock 50 s ahead wrote it: refused, but the record comes back to now,
        // so the refusal lasts one delay from now, not until 50 + 60 s from now.
        Self.setMtime(path, offset: 50)
        let before = Self.wallSeconds()
        let left = Self.refusal { () throws(MaildropError) in try Maildrop.open(path: f.root, loginDelaySeconds: 60) }
        #expect(left == 60)
        let moved = Self.mtime(path).tv_sec
        #expect(moved >= before && moved <= Self.wallSeconds())
        // One delay after that refusal (the record set back by 60 s): allowed.
        Self.setMtime(path, offset: -60)
        try Maildrop.open(path: f.root, loginDelaySeconds: 60).close()
    }

    @Test func aRecordFurtherInTheFutureThanTheDelayIsNoRecord() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root, loginDelaySeconds: 60).close()
        let path = lockPath(f)
        Self.setMtime(path, offset: 3600)  // the clock stepped back an hour since that login
        let before = Self.wallSeconds()
        let drop = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        // ... and the login wrote a sane record, which now holds.
        let recorded = Self.mtime(path).tv_sec
        #expect(recorded >= before && recorded <= Self.wallSeconds())
        drop.close()
        #expect(Self.refusal { () throws(MaildropError) in try Maildrop.open(path: f.root, loginDelaySeconds: 60) } != nil)
    }

    @Test func aQuickOpenThatGivesUpRecordsNothing() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root).close()
        let path = lockPath(f)
        Self.setMtime(path, offset: -3600)
        let old = Self.mtime(path).tv_sec
        // A message without a size in its name and no size cache: the quick open must not read it.
        try f.writer.deliver(Array("needs reading\n".utf8), fileName: "1700000001.M0P1.host")
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: f.root, quick: true, loginDelaySeconds: 60)
        }
        #expect(Self.mtime(path).tv_sec == old)
        // So the worker's open that follows is not refused, and records the login.
        let drop = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        #expect(drop.count == 1 && Self.mtime(path).tv_sec != old)
    }

    /// Regression: the first login of a Maildir whose messages must be read. The quick open
    /// created the lock file and gave up; the worker's open took the file's creation time for
    /// a login and refused the user's very first login.
    @Test func aLockFileCreatedByAQuickOpenThatGaveUpIsNoLogin() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("needs reading\n".utf8), fileName: "1700000001.M0P1.host")
        #expect(!exists(lockPath(f)))
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: f.root, quick: true, loginDelaySeconds: 60)
        }
        #expect(exists(lockPath(f)) && Self.mtime(lockPath(f)).tv_sec == 0)
        let drop = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        #expect(drop.count == 1 && Self.mtime(lockPath(f)).tv_sec > 0)
    }

    /// A lock file whose modification time cannot be set (not the owner, no CAP_FOWNER, as on a
    /// Maildir shared by several users, or read-only storage): the login works and says why.
    /// `setfsuid` applies to the calling thread only and drops CAP_FOWNER/CAP_DAC_OVERRIDE
    /// from it, so tests on other threads are not affected.
    /// glibc's setfsuid(2) (<sys/fsuid.h> is not in the Glibc module): the calling thread's
    /// file-system uid, returning the previous one.
    static let setfsuid: (@convention(c) (UInt32) -> Int32)? = {
        guard let symbol = dlsym(nil, "setfsuid") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UInt32) -> Int32).self)
    }()

    @Test(.enabled(if: geteuid() == 0, "needs root to act as another file-system user"))
    func aRecordThatCannotBeWrittenDoesNotRefuseTheLogin() throws {
        let f = try Fixture()
        try Maildrop.open(path: f.root).close()
        let path = lockPath(f)
        for dir in [f.temp.path, f.root, f.root + "/new", f.root + "/cur", f.root + "/tmp"] { chmod(dir, 0o777) }
        chmod(path, 0o666)
        Self.setMtime(path, offset: 30)  // in the future within the delay: must be moved, cannot
        let old = Self.mtime(path).tv_sec
        let setfsuid = try #require(Self.setfsuid)
        _ = setfsuid(65534)
        defer { _ = setfsuid(0) }
        #expect(setfsuid(UInt32.max) == 65534)  // (asks without changing) the thread is now uid 65534
        let drop = try Maildrop.open(path: f.root, loginDelaySeconds: 60)
        if case .permanent(let why)? = drop.statistics.loginRecordError {
            #expect(why.contains("futimens"))
        } else {
            Issue.record("expected a futimens error, got \(String(describing: drop.statistics.loginRecordError))")
        }
        drop.close()
        #expect(Self.mtime(path).tv_sec == old)
        // Nothing recorded, nothing refused.
        try Maildrop.open(path: f.root, loginDelaySeconds: 60).close()
    }

    @Test func theRuleNeverRefusesForLongerThanTheDelay() {
        func ts(_ ns: Int128) -> timespec {
            let (q, r) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
            return r < 0 ? timespec(tv_sec: Int(q) - 1, tv_nsec: Int(r) + 1_000_000_000)
                         : timespec(tv_sec: Int(q), tv_nsec: Int(r))
        }
        let second: Int128 = 1_000_000_000
        let now: Int128 = 1_800_000_000 * second + 123_456_789
        let delay = 300
        let d = Int128(delay) * second
        func verdict(_ last: Int128, at t: Int128 = now) -> Maildrop.LoginDelayVerdict {
            Maildrop.loginDelayVerdict(last: ts(last), now: ts(t), delaySeconds: delay)
        }
        // Boundaries.
        #expect(verdict(now - d) == .allowed)
        #expect(verdict(now - d + 1) == .tooSoon(secondsLeft: 1))
        #expect(verdict(now) == .tooSoon(secondsLeft: delay))
        #expect(verdict(now + 1) == .tooSoonMoveRecordToNow(secondsLeft: delay))
        #expect(verdict(now + d) == .tooSoonMoveRecordToNow(secondsLeft: delay))
        #expect(verdict(now + d + 1) == .allowed)
        #expect(Maildrop.loginDelayVerdict(last: ts(now), now: ts(now), delaySeconds: 0) == .allowed)
        // Records from disk may hold anything: no trap, and nothing absurd refuses.
        for sec in [Int.max, Int.min, Int.max - 1, 0, -1] {
            #expect(Maildrop.loginDelayVerdict(last: timespec(tv_sec: sec, tv_nsec: 999_999_999), now: ts(now),
                                               delaySeconds: delay) == .allowed)
        }
        #expect(Maildrop.loginDelayVerdict(last: ts(now), now: ts(now), delaySeconds: Int.max) != .allowed)
        // Whatever the record, a refusal at t means a retry at t + delay succeeds (the record
        // as the refusal left it, nobody logging in meanwhile).
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10_000 {
            let last = now + Int128(Int64.random(in: -3 * Int64(d)...3 * Int64(d), using: &rng))
            switch verdict(last) {
            case .allowed: continue
            case .tooSoon(let left):
                #expect(left >= 1 && left <= delay)
                #expect(verdict(last, at: now + d) == .allowed)
                #expect(verdict(last, at: now + Int128(left) * second) == .allowed)
            case .tooSoonMoveRecordToNow(let left):
                #expect(left == delay)
                #expect(verdict(now, at: now + d) == .allowed)
            }
        }
    }
}
