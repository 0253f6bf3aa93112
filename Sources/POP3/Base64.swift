/// Base64 (RFC 4648 §4) for SASL (RFC 5034 §4), strict on decoding.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Decoding table: 0...63 for alphabet bytes, 0xFF otherwise.
    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        return table
    }()

    public static func encode(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let first = iterator.next() {
            let second = iterator.next()
            let third = iterator.next()
            let word = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
            output.append(alphabet[Int(word >> 18 & 63)])
            output.append(alphabet[Int(word >> 12 & 63)])
            output.append(second == nil ? UInt8(ascii: "=") : alphabet[Int(word >> 6 & 63)])
            output.append(third == nil ? UInt8(ascii: "=") : alphabet[Int(word & 63)])
        }
        return output
    }

    /// Decodes canonical base64 or returns nil. RFC 5034 §4: reject any
    /// character outside the alphabet and any `=` except at the end; we also
    /// require a length that is a multiple of 4 and zero padding bits, so every
    /// input has exactly one meaning.
    public static func decode(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            let a = table[Int(input[index])], b = table[Int(input[index + 1])]
            guard a != 0xFF, b != 0xFF else { return nil }
            let c3 = input[index + 2], c4 = input[index + 3]
            if isLast && c4 == UInt8(ascii: "=") {
                if c3 == UInt8(ascii: "=") {
                    guard b & 0x0F == 0 else { return nil }
                    output.append(a << 2 | b >> 4)
                } else {
                    let c = table[Int(c3)]
                    guard c != 0xFF, c & 0x03 == 0 else { return nil }
                    output.append(a << 2 | b >> 4)
                    output.append(b << 4 | c >> 2)
                }
                return output
            }
            let c = table[Int(c3)], d = table[Int(c4)]
            guard c != 0xFF, d != 0xFF else { return nil }
            output.append(a << 2 | b >> 4)
            output.append(b << 4 | c >> 2)
            output.append(c << 6 | d)
            index += 4
        }
        return output
    }

    public static func decode(_ bytes: [UInt8]) -> [UInt8]? {
        bytes.withUnsafeBytes { decode($0) }
    }
}

/// SASL PLAIN (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
public enum SASLPlain {
    public struct Credentials: Equatable, Sendable {
        public var authzid: String
        public var authcid: String
        public var password: [UInt8]
    }

    /// Splits a PLAIN message; nil when malformed (not exactly two NULs, empty
    /// authcid or password, or not UTF-8 identities).
    public static func parse(_ message: [UInt8]) -> Credentials? {
        guard let first = message.firstIndex(of: 0) else { return nil }
        guard let second = message[(first + 1)...].firstIndex(of: 0) else { return nil }
        guard !message[(second + 1)...].contains(0) else { return nil }
        let authcidBytes = message[(first + 1)..<second]
        let password = Array(message[(second + 1)...])
        guard !authcidBytes.isEmpty, !password.isEmpty,
            let authzid = String(validating: message[..<first], as: UTF8.self),
            let authcid = String(validating: authcidBytes, as: UTF8.self)
        else { return nil }
        return Credentials(authzid: authzid, authcid: authcid, password: password)
    }

    /// The authcid's octets of a message that `parse` refused, for the failed-login log line:
    /// only when the message has exactly two NULs (the RFC 4616 §2 framing), else empty, so
    /// that a client that got the framing wrong (`user NUL password`) never has its password
    /// logged as a name.
    public static func authcidOctets(_ message: [UInt8]) -> [UInt8] {
        guard let first = message.firstIndex(of: 0),
              let second = message[(first + 1)...].firstIndex(of: 0),
              !message[(second + 1)...].contains(0) else { return [] }
        return Array(message[(first + 1)..<second])
    }

    /// RFC 4616 §2 lets the server refuse a different authorization identity;
    /// we have no proxy users, so only empty or equal to authcid is accepted.
    public static func userToLogIn(_ credentials: Credentials) -> String? {
        // Compared as octets: a canonically equivalent spelling is another identity.
        if credentials.authzid.isEmpty || credentials.authzid.utf8.elementsEqual(credentials.authcid.utf8) {
            return credentials.authcid
        }
        return nil
    }

    /// Builds a PLAIN message (client side, pop3bench).
    public static func encode(authzid: String = "", user: String, password: String) -> [UInt8] {
        Array(authzid.utf8) + [0] + Array(user.utf8) + [0] + Array(password.utf8)
    }
}
