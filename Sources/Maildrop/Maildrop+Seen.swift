import Glibc

/// What `Maildrop.markSeen` did.
public struct SeenResult: Sendable, Equatable {
    /// Messages that now carry the `S` flag (already marked ones included).
    public var marked = 0
    /// Messages that could not be renamed (gone, renamed again meanwhile, an error); they stay
    /// as they were. A flag costs no mail: the caller logs this, the session is not failed.
    public var failed = 0
    /// The first rename failure, for the log line; nil when `failed` is 0.
    public var firstError: MaildropError?

    /// Nothing marked, nothing failed.
    public init() {}
}

extension Maildrop {
    /// Gives the messages at `indices` (0-based) the Maildir `S` (seen) flag, in UPDATE after
    /// the deletions, for RFC 1725 `LAST` (`pop3_enable_last`): the next session's `LAST` starts
    /// at the highest seen message, so mutt's `pop_last` fetches only what came after. Dovecot
    /// sets `\Seen` on RETRed messages at QUIT the same way (its `pop3_no_flag_updates = no`),
    /// so a Maildir shared with Dovecot or read by IMAP agrees on what was read.
    ///
    /// A message in new/ moves to cur/ with `:2,S` (maildir(5): a reader moves what it has
    /// seen to cur/); one in cur/ gets `S` added among its flags, kept in ASCII order
    /// (`nameWithSeenFlag`). The unique name does not change, so neither does the UIDL.
    /// A message another program renamed since login is found again by one listing for all
    /// of them (as `commit` does); one that is gone is skipped. Indices out of range, repeated
    /// or already seen cost nothing. One `renameat` per message: the glue runs it on the
    /// storage worker that runs the deletions, under the maildrop lock.
    public func markSeen(_ indices: [Int]) -> SeenResult {
        var result = SeenResult()
        var done = Set<Int>()
        var moved: [Int] = []
        func fail(_ error: MaildropError) {
            result.failed += 1
            if result.firstError == nil { result.firstError = error }
        }
        for i in indices where messages.indices.contains(i) && !removedSinceLogin.contains(i) && done.insert(i).inserted {
            do {
                if try rename(toSeen: messages[i].folder, messages[i].fileName) { result.marked += 1 } else { moved.append(i) }
            } catch {
                fail(error)
            }
        }
        guard !moved.isEmpty else { return result }
        let now: [String: (folder: MessageInfo.Folder, fileName: String)]
        do {
            now = try locate(uniqueNames: Set(moved.map { messages[$0].uniqueName }))
        } catch {
            for _ in moved { fail(error) }
            return result
        }
        for i in moved {
            // Gone from new/ and cur/: another program removed it; nothing to mark.
            guard let place = now[messages[i].uniqueName] else { continue }
            do {
                if try rename(toSeen: place.folder, place.fileName) {
                    result.marked += 1
                } else {
                    fail(.temporary("renameat(\(filePath(place.folder, place.fileName))): renamed again by another program"))
                }
            } catch {
                fail(error)
            }
        }
        return result
    }

    /// true when the file has the flag now (renamed, or already had it), false when `name`
    /// no longer exists in `folder`.
    private func rename(toSeen folder: MessageInfo.Folder, _ name: String) throws(MaildropError) -> Bool {
        guard let seenName = Self.nameWithSeenFlag(name) else {
            return true  // already seen, or an info part this server does not write (kept as it is)
        }
        let from = try directoryFD(folder)
        let to = try directoryFD(.cur)
        switch try Sys.callOrMissing("renameat", filePath(folder, name), { renameat(from, name, to, seenName) }) {
        case .ok: return true
        case .missing: return false
        }
    }

    /// The file name with the `S` flag: `base` → `base:2,S`; `base:2,FR` → `base:2,FRS`
    /// (maildir(5): flags in ASCII order; Dovecot's keyword letters `a`–`z` sort after `S`).
    /// Nil when the name already has `S`, or has an info part other than `2,` (experimental
    /// `1,` semantics this server does not know how to extend).
    static func nameWithSeenFlag(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return name + ":2,S" }
        let info = bytes[(colon + 1)...]
        guard info.starts(with: "2,".utf8) else { return nil }
        let flags = info.dropFirst(2)
        if flags.contains(UInt8(ascii: "S")) { return nil }
        var out = Array(bytes[...(colon + 2)])
        var inserted = false
        for flag in flags {
            if !inserted && flag > UInt8(ascii: "S") {
                out.append(UInt8(ascii: "S"))
                inserted = true
            }
            out.append(flag)
        }
        if !inserted { out.append(UInt8(ascii: "S")) }
        return String(decoding: out, as: UTF8.self)
    }
}
