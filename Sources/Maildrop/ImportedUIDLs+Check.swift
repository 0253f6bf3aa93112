/// What `pop3d uidl check` shows for one maildrop: per message, the UIDL each source gives
/// and the one pop3d serves now.
public struct UIDLInspection: Sendable, Equatable {
    /// One message of the listing, with what each UIDL source says for it.
    public struct Row: Sendable, Equatable {
        /// POP3 message number (1-based) in the order pop3d serves for the format.
        public var number: Int
        /// The Maildir base name without flags and `,S=`/`,W=` fields (`MessageInfo.uniqueName`).
        public var uniqueName: String
        /// LIST size.
        public var size: Int
        /// What a login serves now (imports, format, fallback and RFC 1939 §7 applied).
        public var served: String
        /// Which source `served` comes from: `imported`, the format's name, or `maildir`.
        public var servedFrom: String
        /// The UIDL `uidl_format = maildir` gives it (`MaildirName.uid`).
        public var maildir: String
        /// nil: the source has nothing for this message (or cannot be read: see `notes`).
        public var courier: String?
        /// What Dovecot serves, from `dovecot-uidlist`: `%08Xu%08Xv`, or a `P` record's UIDL.
        public var dovecot: String?
        /// The message's `X-UIDL:` header value, octets outside 0x21–0x7E and `\` shown as `\xNN`.
        public var xUIDL: String?
        /// The entry of `pop3d.uidls` (`ImportedUIDLs`).
        public var imported: String?
    }

    /// The Maildir inspected, as given.
    public var path: String
    /// The `uidl_format` the rows were served under.
    public var format: UIDLFormat
    /// One row per listed message, in POP3 message-number order.
    public var rows: [Row] = []
    /// One line per source that is absent or cannot be used, and the session's fallback.
    public var notes: [String] = []
}

extension Maildrop {
    /// `pop3d uidl check MAILDIR`: opens the maildrop as a login with `format` does (lock
    /// taken, so a session holding it is an error, and the served UIDLs are exactly a login's)
    /// and reads every source read only. Octets outside 0x21–0x7E in a source's value are
    /// shown as `\xNN`.
    public static func inspectUIDLs(
        path: String, format: UIDLFormat, allowRootSymlink: Bool = false
    ) throws(UIDLStateError) -> UIDLInspection {
        let drop = try openForAdmin(path: path, allowRootSymlink: allowRootSymlink, uidl: UIDLOptions(format: format))
        defer { drop.close() }
        var out = UIDLInspection(path: path, format: format)
        if let why = drop.statistics.uidlFallback {
            out.notes.append("uidl_format \(format.rawValue) falls back to maildir: \(why)")
        }
        if let why = drop.statistics.importedUIDLsIgnored {
            out.notes.append("\(ImportedUIDLs.fileName) is not used: \(why)")
        }
        do {
            let rootfd = try drop.openRoot()
            defer { Sys.close(rootfd) }
            var courier: [String: String] = [:]
            switch try CourierSizeList.load(rootfd: rootfd, quick: false) {
            case .absent: out.notes.append("courier: no \(CourierSizeList.fileName)")
            case .unusable(let why): out.notes.append("courier: \(why)")
            case .valid(let list): courier = list.uidls
            }
            var dovecot: [String: String] = [:]
            switch try drop.dovecotUIDLsForImport(rootfd: rootfd) {
            case .failure(let error): out.notes.append("dovecot: \(error)")
            case .success(let u): dovecot = u
            }
            var imported: [String: String] = [:]
            switch try ImportedUIDLs.load(rootfd: rootfd, quick: false) {
            case .absent: out.notes.append("imported: no \(ImportedUIDLs.fileName)")
            case .unusable: break  // noted above
            case .valid(let s): imported = s.uidls
            }
            for (i, m) in drop.messages.enumerated() {
                let maildir = MaildirName(m.fileName).uid
                let x = try drop.xUIDL(i).map(printable)
                let from: String
                if imported[m.uniqueName] == m.uid {
                    from = "imported"
                } else if format == .courier, courier[m.uniqueName] == m.uid {
                    from = "courier"
                } else if format != .maildir, format != .courier, m.uid != maildir {
                    from = format.rawValue
                } else {
                    from = "maildir"
                }
                out.rows.append(UIDLInspection.Row(
                    number: i + 1, uniqueName: m.uniqueName, size: m.size, served: m.uid, servedFrom: from,
                    maildir: maildir, courier: courier[m.uniqueName], dovecot: dovecot[m.uniqueName],
                    xUIDL: x, imported: imported[m.uniqueName]))
            }
        } catch {
            throw UIDLStateError("\(path): \(error)")
        }
        return out
    }

    static func printable(_ bytes: [UInt8]) -> String {
        var s = ""
        for b in bytes {
            if b >= 0x21 && b <= 0x7E && b != UInt8(ascii: "\\") {
                s.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = Array("0123456789abcdef".unicodeScalars)
                s += "\\x"
                s.unicodeScalars.append(hex[Int(b >> 4)])
                s.unicodeScalars.append(hex[Int(b & 0xF)])
            }
        }
        return s
    }
}
