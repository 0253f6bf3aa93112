/// RFC 1939 §7's rules for a unique-id listing, applied after every format and import.
enum UIDLRules {
    /// RFC 1939 §7: a unique-id is at most 70 characters.
    static let maxOctets = 70

    /// 1 to 70 octets, each in 0x21–0x7E (RFC 1939 §7).
    static func isValid(_ uidl: some Collection<UInt8>) -> Bool {
        let n = uidl.count
        return n >= 1 && n <= maxOctets && uidl.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
    }

    /// A valid UIDL for one that breaks the rules: the hex SHA-256 of its octets (64
    /// octets), as pop3d does for Maildir names (`MaildirName.uid`): stable across logins and
    /// hosts. Clients that knew the invalid form see a new UIDL; an import refuses such
    /// UIDLs instead (`pop3d uidl import`), so this only meets files edited by hand and
    /// formats whose data can give one.
    static func repaired(_ uidl: String) -> String {
        SHA256.hex(Array(uidl.utf8))
    }
}

extension Maildrop {
    /// Makes the listing keep RFC 1939 §7 whatever the format or import gave: a UIDL that is
    /// not 1–70 octets in 0x21–0x7E is replaced by its hex SHA-256 (`UIDLRules.repaired`,
    /// counted in `statistics.uidlsRepaired`), and a UIDL met again (in message order) gets a
    /// suffix as Dovecot's `pop3_uidl_duplicates = rename` gives it: `-<n>`, where n counts
    /// the copies of that UIDL seen so far (the second `x` is `x-2`, the third `x-3`), again
    /// while the result is itself taken (`x-2-2`). A suffixed UIDL longer than 70 octets is
    /// replaced by its hash, which is checked the same way. Counted in
    /// `statistics.uidlsRenamed`.
    ///
    /// The suffix depends on the order, so a duplicate's UIDL changes when an earlier copy is
    /// deleted (Dovecot's too); `pop3d uidl import` therefore resolves duplicates once and
    /// stores the result, and this is the safety net for what reaches a login anyway.
    func enforceUIDLRules() {
        var copies: [String: Int] = [:]
        copies.reserveCapacity(messages.count)
        var repaired = 0
        var renamed = 0
        for i in messages.indices {
            var uidl = messages[i].uid
            if !UIDLRules.isValid(uidl.utf8) {
                uidl = UIDLRules.repaired(uidl)
                repaired += 1
            }
            if copies[uidl] != nil {
                renamed += 1
                while let seen = copies[uidl] {
                    let n = seen + 1
                    copies[uidl] = n
                    uidl += "-\(n)"
                    if uidl.utf8.count > UIDLRules.maxOctets { uidl = UIDLRules.repaired(uidl) }
                }
            }
            copies[uidl] = 1
            messages[i].uid = uidl
        }
        statistics.uidlsRepaired = repaired
        statistics.uidlsRenamed = renamed
    }
}
