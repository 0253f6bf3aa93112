/// A login name as octets: the key of the user table and anything
/// else that decides whether two names are one user.
///
/// Swift `String`s compare by canonical equivalence, so `"\u{212A}im"` (KELVIN SIGN) equals
/// `"Kim"`, and a decomposed `"cafe\u{301}"` equals `"café"`: used as a dictionary key they make
/// two users one (an attacker listed first under the look-alike name logs into the other's
/// maildrop). Dovecot compares user names as bytes; so does this type. A `String` made from
/// the client's octets (`String(validating:as: UTF8.self)`) keeps its scalars, so `init(_:)`
/// gives back exactly the octets the client sent.
public struct UserName: Hashable, Sendable, CustomStringConvertible {
    /// The UTF-8 octets of the name, as sent or as written in the passwd-file.
    public let bytes: [UInt8]

    /// The UTF-8 octets of `name`, scalars as they are (no normalization).
    public init(_ name: String) {
        bytes = Array(name.utf8)
    }

    /// These octets as they are (not checked to be UTF-8).
    public init(bytes: some Sequence<UInt8>) {
        self.bytes = Array(bytes)
    }

    /// The name as text, for logs (which escape it) and paths; invalid UTF-8 becomes U+FFFD.
    public var description: String { String(decoding: bytes, as: UTF8.self) }
}
