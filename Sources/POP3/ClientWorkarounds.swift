/// Dovecot's `pop3_client_workarounds`: changes to the octets RETR and TOP send, for clients
/// that break on what RFC 1939 allows. Off by default; each one changes only what
/// `MessageEncoder` writes, and the listed sizes follow (ARCHITECTURE.md "One wire-size
/// rule"): `outlook-no-nuls` keeps every length, `oe-ns-eoh` adds 2 octets to a message whose
/// header has no blank line ending it, which `Maildrop`'s size counter knows too
/// (`WireSizeRule.addsMissingHeaderEnd`).
public struct ClientWorkarounds: OptionSet, Sendable, Hashable {
    /// Bit set: bit 0 `outlook-no-nuls`, bit 1 `oe-ns-eoh`.
    public let rawValue: UInt8
    /// A set from its bits (unknown bits are kept and do nothing).
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `outlook-no-nuls`: Outlook and Outlook Express stop reading a message at a NUL octet,
    /// so every NUL is sent as 0x80 instead, as Dovecot does. One octet for one: no size
    /// changes, the sizes from names (`W=`) and the size cache stay valid.
    public static let outlookNoNuls = ClientWorkarounds(rawValue: 1 << 0)
    /// `oe-ns-eoh`: Outlook Express and Netscape Mail wait for the blank line that ends the
    /// header (RFC 5322 §2.1) and break on a message that has none (headers only, or an empty
    /// file), so such a message gets an empty line (CRLF) at its end, as Dovecot adds it.
    /// Unlike Dovecot, the listed size counts those 2 octets.
    public static let oeNsEoh = ClientWorkarounds(rawValue: 1 << 1)

    /// Dovecot's names, in the order they are documented.
    public static let names: [(name: String, workaround: ClientWorkarounds)] = [
        ("outlook-no-nuls", .outlookNoNuls),
        ("oe-ns-eoh", .oeNsEoh),
    ]

    /// Parses Dovecot's list (names separated by spaces or commas, any case); nil names the
    /// first word that is not a known workaround.
    public static func parse(_ words: [String]) -> Result<ClientWorkarounds, UnknownWorkaround> {
        var set: ClientWorkarounds = []
        for word in words {
            for piece in word.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }) {
                let name = piece.lowercased()
                guard let found = names.first(where: { $0.name == name }) else {
                    return .failure(UnknownWorkaround(name: String(piece)))
                }
                set.insert(found.workaround)
            }
        }
        return .success(set)
    }

    /// The names of the members, space-separated, in `names` order (for the log).
    public var description: String {
        Self.names.filter { contains($0.workaround) }.map(\.name).joined(separator: " ")
    }
}

/// A `pop3_client_workarounds` word that names no workaround.
public struct UnknownWorkaround: Error, Equatable {
    /// The word as written in the configuration.
    public let name: String
}
