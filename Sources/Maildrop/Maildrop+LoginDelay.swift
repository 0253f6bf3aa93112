import CShim
import Glibc
import SystemCalls

/// RFC 2449 §6.5 LOGIN-DELAY, kept with the maildrop: the time of the last login is the
/// modification time of `pop3d.lock` (`Maildrop.lockFileName`), read with `fstat` and written
/// with `futimens` on the lock descriptor that `open` holds anyway. So the rule holds for every
/// process and every host that opens the same Maildir (workers, hosts sharing it over NFS), it
/// costs no extra file, descriptor or rename, and the check and the record happen under the
/// maildrop's exclusive lock: two sessions racing for one user cannot both pass (the loser
/// gets `.inUse`). Dovecot has nothing built in for this (it keeps last-login times with its
/// last_login plugin in a dict).
///
/// Clock: wall-clock time (`CLOCK_REALTIME`, nanoseconds; the file system may round it down to
/// its timestamp granularity, which can only shorten the delay by that much), because
/// `CLOCK_MONOTONIC` means nothing to another boot or another host. A record in the future
/// (the clock stepped back, or the host that wrote it is ahead) never locks a user out for
/// more than the delay: see `LoginDelayRule`.
extension Maildrop {
    /// What `open` decides from the lock file's modification time.
    enum LoginDelayVerdict: Equatable {
        /// No login within the delay (or no usable record): the login may proceed.
        case allowed
        /// The last login was less than the delay ago: refuse, `secondsLeft` (≥ 1, rounded up)
        /// until it may.
        case tooSoon(secondsLeft: Int)
        /// The record lies in the future by at most the delay: refuse with `secondsLeft` = the
        /// delay after moving the record to now, so the refusal ends one delay from now.
        case tooSoonMoveRecordToNow(secondsLeft: Int)
    }

    /// The LOGIN-DELAY rule on wall-clock nanoseconds, pure so it can be tested at any time.
    ///
    /// With `elapsed = now − last`:
    /// - `elapsed ≥ delay`: allowed.
    /// - `0 ≤ elapsed < delay`: too soon, until `last + delay`.
    /// - `−delay ≤ elapsed < 0` (a record up to one delay in the future: another host's clock
    ///   is ahead, or this clock stepped back a little): too soon, and the record is moved back
    ///   to now, so this refusal and every later one end by `now + delay`. Left in the future,
    ///   the record would refuse until `last + delay`, up to two delays away.
    /// - `elapsed < −delay` (further in the future: a large clock step, or a record written by
    ///   something else): no record; the login proceeds and writes a sane one.
    /// So whatever the record holds, no refusal is followed by refusals for longer than the
    /// delay, unless the user logs in again meanwhile. Arithmetic is in `Int128`: a record's
    /// seconds come from disk and may be anything.
    static func loginDelayVerdict(last: timespec, now: timespec, delaySeconds: Int) -> LoginDelayVerdict {
        guard delaySeconds > 0 else { return .allowed }
        let delay = Int128(delaySeconds) * 1_000_000_000
        let elapsed = nanoseconds(now) - nanoseconds(last)
        if elapsed >= delay { return .allowed }
        if elapsed >= 0 {
            // Rounded up: "1 s left" until the very last nanosecond has passed.
            let left = (delay - elapsed + 999_999_999) / 1_000_000_000
            return .tooSoon(secondsLeft: Int(left))
        }
        if -elapsed <= delay { return .tooSoonMoveRecordToNow(secondsLeft: delaySeconds) }
        return .allowed
    }

    private static func nanoseconds(_ t: timespec) -> Int128 {
        Int128(t.tv_sec) * 1_000_000_000 + Int128(t.tv_nsec)
    }

    /// Opens `pop3d.lock`, creating it on the first login. With `noteCreation` (LOGIN-DELAY on)
    /// it says whether this open created it (a new lock file records no login): an open without
    /// `O_CREAT` first (the usual case, one call as before), then `O_CREAT|O_EXCL` when it is
    /// missing, and again from the start when another open created it meanwhile. A lock file
    /// created here gets the modification time 0 (1970: no login recorded).
    static func openLockFile(
        _ rootfd: Int32, lockPath: @autoclosure () -> String, noteCreation: Bool
    ) throws(MaildropError) -> (fd: Int32, created: Bool) {
        guard noteCreation else {
            switch try Sys.openRegularFile(rootfd, lockFileName, flags: O_RDWR | O_CREAT, mode: 0o600, path: lockPath()) {
            case .ok(let fd): return (fd, false)
            case .wrongKind(let mode): throw refused(lockPath(), mode, root: false)
            case .missing: throw .temporary("openat(\(lockPath())): removed while being created")
            }
        }
        // Each round ends unless the file appears and vanishes between two calls: bounded,
        // so a program creating and removing it in a loop cannot hold the open here.
        for _ in 0..<lockOpenRounds {
            switch try Sys.openRegularFile(rootfd, lockFileName, flags: O_RDWR, path: lockPath()) {
            case .ok(let fd): return (fd, false)
            case .wrongKind(let mode): throw refused(lockPath(), mode, root: false)
            case .missing: break
            }
            // O_EXCL: a new regular file, never a link; nil when another open created it
            // meanwhile, which the next round opens.
            if let fd = try Sys.createExclusive(rootfd, lockFileName, flags: O_RDWR, mode: 0o600, path: lockPath()) {
                // Its creation time is no login: this open may still give up (a `quick` one
                // handing over to the workers, a cancelled one), and the next open must not
                // take the file's birth for a login. The epoch reads as "none"; should this
                // fail, `created` still covers this open.
                _ = setModificationTime(fd, timespec(tv_sec: 0, tv_nsec: 0), lockPath: lockPath())
                return (fd, true)
            }
        }
        throw .temporary("openat(\(lockPath())): created and removed repeatedly by another program")
    }

    /// Rounds of `openLockFile` (open, create) before it gives up with `.temporary`.
    static let lockOpenRounds = 3

    /// Applies the LOGIN-DELAY rule to the lock file open and locked at `lockfd`.
    /// Throws `.loginDelay` when the login comes too soon. Returns the error of a record that
    /// had to be moved back from the future and could not be (the login then proceeds: a
    /// record nobody can correct must not refuse for longer than the delay).
    static func checkLoginDelay(
        lockfd: Int32, lockPath: @autoclosure () -> String, delaySeconds: Int
    ) throws(MaildropError) -> MaildropError? {
        var st = Glibc.stat()
        _ = try Sys.call("fstat", lockPath()) { fstat(lockfd, &st) }
        let now = wallClock()
        switch loginDelayVerdict(last: st.st_mtim, now: now, delaySeconds: delaySeconds) {
        case .allowed:
            return nil
        case .tooSoon(let left):
            throw .loginDelay(secondsLeft: left)
        case .tooSoonMoveRecordToNow(let left):
            if let error = setModificationTime(lockfd, now, lockPath: lockPath()) { return error }
            throw .loginDelay(secondsLeft: left)
        }
    }

    /// Records a login: the lock file's modification time becomes now (its access time is
    /// left alone). Returns the error instead of throwing: a Maildir where it cannot be
    /// written (read-only, EPERM) still serves logins, unrestricted by LOGIN-DELAY.
    static func recordLogin(lockfd: Int32, lockPath: @autoclosure () -> String) -> MaildropError? {
        setModificationTime(lockfd, wallClock(), lockPath: lockPath())
    }

    /// An explicit time, not `UTIME_NOW`: on NFS that asks the server to stamp its own clock,
    /// while `checkLoginDelay` compares with this host's clock.
    private static func setModificationTime(_ fd: Int32, _ time: timespec, lockPath: @autoclosure () -> String) -> MaildropError? {
        var times = [timespec(tv_sec: 0, tv_nsec: utimeOmit), time]
        do throws(MaildropError) {
            _ = try Sys.call("futimens", lockPath()) { futimens(fd, &times) }
            return nil
        } catch {
            return error
        }
    }

    /// `UTIME_OMIT` of <sys/stat.h>, which Swift does not import (CShim): leaves the access
    /// time as it is.
    private static let utimeOmit = Int(CSHIM_UTIME_OMIT)

    private static func wallClock() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }
}

extension Sys {
    /// `openat` with `O_CREAT|O_EXCL` (and `safeOpenFlags`): the descriptor of a regular file
    /// this call created, or nil when the name exists already (EEXIST, a link included).
    static func createExclusive(
        _ dirfd: Int32, _ name: String, flags: Int32, mode: mode_t, path: @autoclosure () -> String
    ) throws(MaildropError) -> Int32? {
        do throws(SyscallError) {
            return try syscallBlocking("openat") { openat(dirfd, name, flags | O_CREAT | O_EXCL | safeOpenFlags, mode) }
        } catch where error.errno == EEXIST {
            return nil
        } catch {
            throw MaildropError(error, path: path())
        }
    }
}
