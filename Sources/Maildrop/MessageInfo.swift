/// One message of an open maildrop, as listed at login.
public struct MessageInfo: Sendable, Equatable {
    /// Which Maildir subdirectory the file was listed in.
    public enum Folder: Sendable, Equatable {
        /// maildir(5)'s new/ (not yet seen by a reader) and cur/.
        case new, cur

        var directoryName: String { self == .new ? "new" : "cur" }
    }

    /// Where the file was at login (it may be renamed later by another agent).
    public var folder: Folder
    /// The file name at login, flags included.
    public var fileName: String
    /// The base name without `:2,` flags and `,S=`/`,W=` fields; stable
    /// across flag changes and new/ → cur/ moves.
    public var uniqueName: String
    /// RFC 1939 §7 unique-id: `uniqueName`, or its SHA-256 hex when it is
    /// longer than 70 octets or has bytes outside 0x21–0x7E.
    public var uid: String
    /// Octets as RETR sends them before dot-stuffing (CRLF line endings).
    public var size: Int
    /// Octets on disk at login.
    public var fileSize: Int
}

/// What opening a maildrop cost; makes the size cache observable.
public struct OpenStatistics: Sendable, Equatable {
    /// Messages whose file was read to compute its CRLF size.
    public var messagesRead = 0
    /// Sizes taken from a consistent `W=` name field.
    public var sizesFromName = 0
    /// Sizes taken from the `pop3d.sizes` cache.
    public var sizesFromCache = 0
    /// Whether `pop3d.sizes` was rewritten.
    public var cacheWritten = false
    /// Why writing `pop3d.sizes` failed, if it did (the login still works).
    public var cacheError: MaildropError? = nil
    /// Why an existing `pop3d.sizes` was not used (torn, garbage, absurd sizes, too large,
    /// not a regular file); it is rewritten by the same open.
    public var cacheDiscarded: String? = nil
    /// Why the LOGIN-DELAY record (the lock file's modification time) was not written, if
    /// it was not (read-only Maildir, EPERM): the login still works.
    public var loginRecordError: MaildropError? = nil
    /// Directory entries skipped: not regular files, non-UTF-8 names, or
    /// duplicates seen in both new/ and cur/ during a concurrent move.
    public var entriesSkipped = 0
    /// Why the format's UIDLs could not be used and this session serves `maildir` UIDLs
    /// instead (the format's state file is missing, unreadable or does not parse; it is
    /// left alone). Logged at every login until fixed.
    public var uidlFallback: String? = nil
    /// Messages served the UIDL recorded by `pop3d uidl import` (`pop3d.uidls`).
    public var importedUIDLs = 0
    /// Why an existing `pop3d.uidls` was not used (the format's UIDLs are served; the file
    /// is never rewritten while it does not parse).
    public var importedUIDLsIgnored: String? = nil
    /// Entries of messages confirmed gone that were dropped from `pop3d.uidls`.
    public var importedUIDLsPruned = 0
    /// Why rewriting `pop3d.uidls` without the gone messages failed (the login still works).
    public var importedUIDLsWriteError: MaildropError? = nil
    /// UIDLs that broke RFC 1939 §7 (length, octets) and were replaced by their hash.
    public var uidlsRepaired = 0
    /// Duplicate UIDLs given a `-<n>` suffix (Dovecot's `pop3_uidl_duplicates = rename`).
    public var uidlsRenamed = 0
    /// UIDs this open gave to new messages in `dovecot-uidlist`.
    public var uidsAssigned = 0
    /// Sizes (and names, UIDLs, order) taken from the login index `pop3d.index` without a
    /// `stat` of the message: every message of a warm login, the known names of a folder that
    /// changed otherwise.
    public var sizesFromIndex = 0
    /// Folders (new/, cur/) whose directory was read by this open: 0 for a warm login.
    public var foldersListed = 0
    /// Whether `pop3d.index` was rewritten.
    public var indexWritten = false
    /// Why writing `pop3d.index` failed, if it did (the login still works; the size cache
    /// is written instead).
    public var indexError: MaildropError? = nil
    /// Why an existing `pop3d.index` was not used (torn, garbage, another version, another
    /// directory's); it is rewritten by the same open.
    public var indexDiscarded: String? = nil
    /// Whether this open read `pop3d.sizes` (issue 17): only when a name lacks a usable `W=`,
    /// or when a cache that may hold entries is to be emptied of gone messages.
    public var sizeCacheRead = false
    /// Whether the `pop3d.sizes` this open used was the one parsed or written before, kept in
    /// memory (`SizeCacheMemo`, issue 17): one `fstatat` instead of opening, reading and parsing it.
    public var sizeCacheFromMemory = false

    /// All counts zero, nothing written, nothing discarded.
    public init() {}
}

/// Outcome of `Maildrop.commit(deleting:)` in the UPDATE state.
public struct CommitResult: Sendable, Equatable {
    /// Messages removed (including ones that were already gone).
    public var deleted: Int
    /// Messages that could not be removed; they stay in the maildrop.
    public var failed: Int
    /// The first failure, for the log line and the `[SYS/TEMP]` reply.
    public var firstError: MaildropError?
    /// Listed octets of the messages that could not be removed (saturating), so the
    /// session-end line's `del=count/bytes` counts only what is gone.
    public var failedOctets = 0
}
