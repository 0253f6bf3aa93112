/// A mail location template in Dovecot's syntax, e.g.
/// `maildir:/srv/mail/%u/Maildir` or `maildir:%h/Maildir` (also `maildir:~/Maildir`).
///
/// Variables (Dovecot semantics): `%u` the full user name, `%n` its local
/// part (before the first `@`, or all of it), `%d` its domain (after the first
/// `@`), `%h` the home directory from the passwd-file, `%%` a literal `%`.
/// The template is parsed once; `path(user:home:)` only substitutes.
public struct MailLocation: Sendable, Equatable {
    /// Longest accepted user name in octets; longer ones are `.invalidUser`
    /// (a name is one path component and Linux limits those to 255).
    public static let maxUserLength = 255

    enum Piece: Sendable, Equatable {
        case literal(String)
        case user, localPart, domain, home
    }

    let pieces: [Piece]

    /// Parses `template`. Throws `.permanent` for an unknown storage scheme,
    /// an unknown `%` variable or a template that cannot yield an absolute path.
    public init(template: String) throws(MaildropError) {
        let prefix = "maildir:"
        guard template.hasPrefix(prefix) else {
            throw .permanent("mail location \"\(template)\": only maildir: is supported")
        }
        var body = Substring(template.dropFirst(prefix.count))
        // Dovecot lets options follow the path (":INDEX=..."); we have none.
        if let colon = body.firstIndex(of: ":") { body = body[..<colon] }
        var pieces: [Piece] = []
        var literal = ""
        // Dovecot: a leading "~" is the home directory.
        if body.hasPrefix("~") {
            pieces.append(.home)
            body = body.dropFirst()
        }
        var it = body.makeIterator()
        while let c = it.next() {
            guard c == "%" else { literal.append(c); continue }
            let piece: Piece
            switch it.next() {
            case "%": literal.append("%"); continue
            case "u": piece = .user
            case "n": piece = .localPart
            case "d": piece = .domain
            case "h": piece = .home
            case let other:
                throw .permanent("mail location \"\(template)\": unknown variable %\(other.map(String.init) ?? "")")
            }
            if !literal.isEmpty { pieces.append(.literal(literal)); literal = "" }
            pieces.append(piece)
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        switch pieces.first {
        case .home?: break
        case .literal(let s)? where s.hasPrefix("/"): break
        default:
            throw .permanent("mail location \"\(template)\": path must be absolute or start with %h or ~")
        }
        self.pieces = pieces
    }

    /// The Maildir path for `user`. Throws `.invalidUser` when the user name
    /// (or the part of it the template uses) is empty, too long, contains
    /// `/`, `..`, NUL or other control bytes, and `.permanent` when the
    /// template needs a home directory and `home` is missing or not absolute.
    public func path(user: String, home: String?) throws(MaildropError) -> String {
        try MailLocation.validate(user: user)
        // Split at the first "@" octet, as Dovecot does: a `Character` search misses an "@"
        // followed by a combining mark (one grapheme), and user names are bytes, not text.
        let bytes = Array(user.utf8)
        let at = bytes.firstIndex(of: UInt8(ascii: "@"))
        let local = at.map { String(decoding: bytes[..<$0], as: UTF8.self) } ?? user
        let domain = at.map { String(decoding: bytes[($0 + 1)...], as: UTF8.self) } ?? ""
        let dot = ".".utf8
        var out = ""
        for piece in pieces {
            switch piece {
            case .literal(let s): out += s
            case .user: out += user
            case .localPart:
                guard !local.isEmpty, !local.utf8.elementsEqual(dot) else { throw .invalidUser }
                out += local
            case .domain:
                guard !domain.isEmpty, !domain.utf8.elementsEqual(dot) else { throw .invalidUser }
                out += domain
            case .home:
                guard let home, home.hasPrefix("/"), !home.utf8.contains(0) else {
                    throw .permanent("user \(user): mail location needs an absolute home directory")
                }
                out += home
            }
        }
        return out
    }

    /// Rejects every name that could leave its path component.
    static func validate(user: String) throws(MaildropError) {
        let bytes = user.utf8
        guard !bytes.isEmpty, bytes.count <= maxUserLength else { throw .invalidUser }
        var previousDot = false
        for b in bytes {
            if b < 0x20 || b == 0x7F || b == UInt8(ascii: "/") { throw .invalidUser }
            let dot = b == UInt8(ascii: ".")
            if dot && previousDot { throw .invalidUser }
            previousDot = dot
        }
        if bytes.elementsEqual(".".utf8) { throw .invalidUser }
    }
}
