extension MessageInfo {
    /// The Maildir `S` (seen) flag is set: the name has the info part `:2,` and `S` among the
    /// flag letters after it (maildir(5), as Dovecot and Courier write it; a message still in
    /// new/ has no flags). RFC 1725 `LAST` starts at the highest seen message, as Dovecot's.
    public var isSeen: Bool {
        let bytes = fileName.utf8
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return false }
        let info = bytes[bytes.index(after: colon)...]
        guard info.starts(with: "2,".utf8) else { return false }
        return info.dropFirst(2).contains(UInt8(ascii: "S"))
    }
}
