/// The variants of the wire-size rule (`CRLFSizeCounter`) that client workarounds ask for.
/// `POP3.ClientWorkarounds` says what the encoder sends; this says what the sizes must count,
/// mirrored because the two modules may not import each other (ARCHITECTURE.md).
///
/// Only `oe-ns-eoh` changes sizes (`outlook-no-nuls` replaces one octet by one). Under it a
/// size depends on whether the message has an empty line, which neither a `W=` field nor a
/// size cache of the plain rule records, so a listing under it reads each message once and
/// keeps the result in a size cache marked with the variant (`SizeCache.header(for:)`); the
/// plain cache of the same Maildir is replaced, and switching back costs one read again.
public struct WireSizeRule: Sendable, Equatable, Hashable {
    /// `oe-ns-eoh`: a message with no empty line (no end of header) is sent with one more
    /// CRLF at its end, and listed 2 octets larger.
    public var addsMissingHeaderEnd: Bool

    /// The plain rule by default (`CRLFSizeCounter`: every line end counted as CRLF, an
    /// unterminated last line ended, dot-stuffing not counted; RFC 1939 §5 "exact size");
    /// `addsMissingHeaderEnd` for the `oe-ns-eoh` workaround.
    public init(addsMissingHeaderEnd: Bool = false) {
        self.addsMissingHeaderEnd = addsMissingHeaderEnd
    }

    /// Sizes from `W=` name fields are the plain rule's: usable only under it.
    var trustsNameSizes: Bool { !addsMissingHeaderEnd }
}
