/// Where a maildrop's unique-id listing comes from (issue 14): `uidl_format`.
///
/// RFC 1939 §7: a unique-id is 1 to 70 octets in 0x21–0x7E, unique within the maildrop and
/// never reused for another message; every format below keeps those rules.
public enum UIDLFormat: String, Sendable, CaseIterable {
    /// The Maildir base name (or its SHA-256 hex when it breaks the RFC's rules): pop3d's own.
    case maildir
    /// Dovecot's default `pop3_uidl_format = %08Xu%08Xv`: IMAP UID and UIDVALIDITY from
    /// `dovecot-uidlist`.
    case dovecot
    /// Courier pop3d's UIDLs, from `courierpop3dsizelist`.
    case courier
    /// UW-IMAP's order of the same data, `%08Xv%08Xu`.
    case uw
    /// Cyrus' form of the same data, `%v.%u`.
    case cyrus
}

/// How `Maildrop.open` gives each message its unique-id.
public struct UIDLOptions: Sendable, Equatable {
    /// Where the UIDLs come from (`uidl_format`); `pop3d.uidls` entries win over any format.
    public var format: UIDLFormat

    /// Options for `format` (default `.maildir`, pop3d's own UIDLs).
    public init(format: UIDLFormat = .maildir) {
        self.format = format
    }
}

extension Maildrop {
    /// Gives every listed message its unique-id for `options` (called by `open` after the
    /// listing, with the Maildir's descriptor). `.maildir` keeps the names' UIDLs.
    /// Then pop3d's own imported UIDLs (`pop3d.uidls`, `ImportedUIDLs`) win over every
    /// format, and RFC 1939 §7 is enforced on the result (`enforceUIDLRules`).
    func assignUIDLs(rootfd: Int32, options: UIDLOptions, quick: Bool) throws(MaildropError) {
        // Whether a UIDL may differ from the listing's own (`MaildirName.uid`, valid and
        // unique by construction): only then is the listing checked again.
        var changed = false
        switch options.format {
        case .maildir:
            break
        case .courier:
            changed = try assignCourierUIDLs(rootfd: rootfd, quick: quick)
        case .dovecot, .uw, .cyrus:
            try assignDovecotUIDLs(rootfd: rootfd, format: options.format, quick: quick)
            changed = true
        }
        if try applyImportedUIDLs(rootfd: rootfd, quick: quick) { changed = true }
        if changed { enforceUIDLRules() }
    }
}
