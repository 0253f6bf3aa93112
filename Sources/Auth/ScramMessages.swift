import ByteCodec

/// client-first-message of RFC 5802 §7, restricted to what we support.
struct ClientFirst {
    var gs2Header: [UInt8]
    var bare: [UInt8]
    var username: String
    var clientNonce: [UInt8]

    static func parse(_ m: [UInt8]) -> Result<ClientFirst, ScramServer.Failure> {
        let comma = UInt8(ascii: ",")
        // gs2-header = gs2-cbind-flag "," [authzid] ","
        guard let c1 = m.firstIndex(of: comma) else { return .failure(.malformed) }
        let flag = m[..<c1]
        if flag.first == UInt8(ascii: "p") { return .failure(.channelBindingNotSupported) }
        // "y": the client could bind but thinks we cannot, which is true (no -PLUS).
        guard flag.elementsEqual("n".utf8) || flag.elementsEqual("y".utf8) else { return .failure(.malformed) }
        guard let c2 = m[(c1 + 1)...].firstIndex(of: comma) else { return .failure(.malformed) }
        let authzid = m[(c1 + 1)..<c2]
        let bare = Array(m[(c2 + 1)...])
        let attrs = bare.split(separator: comma, omittingEmptySubsequences: false)
        guard attrs.count >= 2 else { return .failure(.malformed) }
        if attrs[0].first == UInt8(ascii: "m") { return .failure(.unsupportedExtension) }
        guard attrs[0].starts(with: "n=".utf8), attrs[1].starts(with: "r=".utf8),
              let user = decodeSaslName(attrs[0].dropFirst(2)), !user.isEmpty else { return .failure(.malformed) }
        let nonce = Array(attrs[1].dropFirst(2))
        guard !nonce.isEmpty, nonce.allSatisfy(isNonceChar) else { return .failure(.malformed) }
        // Optional extensions (attr-val) are ignored, but must be well formed.
        for ext in attrs.dropFirst(2) {
            guard ext.count >= 2, let a = ext.first, (a | 0x20) >= UInt8(ascii: "a"), (a | 0x20) <= UInt8(ascii: "z"),
                  ext[ext.startIndex + 1] == UInt8(ascii: "=") else { return .failure(.malformed) }
        }
        if !authzid.isEmpty {
            // Acting for another identity is not offered; naming oneself is harmless.
            guard authzid.starts(with: "a=".utf8), let z = decodeSaslName(authzid.dropFirst(2)) else { return .failure(.malformed) }
            // Compared as octets: a canonically equivalent spelling is another identity.
            guard z.utf8.elementsEqual(user.utf8) else { return .failure(.authzidNotAllowed) }
        }
        return .success(ClientFirst(gs2Header: Array(m[...c2]), bare: bare, username: user, clientNonce: nonce))
    }

    /// printable = %x21-2B / %x2D-7E (no comma).
    static func isNonceChar(_ b: UInt8) -> Bool { b >= 0x21 && b <= 0x7e && b != UInt8(ascii: ",") }

    /// saslname: "=2C" is ",", "=3D" is "=", any other "=" is an error (RFC 5802 §5.1).
    static func decodeSaslName(_ s: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let b = s[i]
            if b == UInt8(ascii: "=") {
                guard i + 2 < s.endIndex else { return nil }
                let esc = s[(i + 1)...(i + 2)]
                if esc.elementsEqual("2C".utf8) { out.append(UInt8(ascii: ",")) }
                else if esc.elementsEqual("3D".utf8) { out.append(UInt8(ascii: "=")) }
                else { return nil }
                i += 3
            } else {
                guard b != 0, b != UInt8(ascii: ",") else { return nil }
                out.append(b)
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// client-final-message: `c=...,r=...[,ext...],p=...`.
struct ClientFinal {
    var channelBinding: [UInt8]
    var nonce: [UInt8]
    var withoutProof: [UInt8]
    var proof: [UInt8]

    static func parse(_ m: [UInt8]) -> ClientFinal? {
        let comma = UInt8(ascii: ",")
        let attrs = m.split(separator: comma, omittingEmptySubsequences: false)
        guard attrs.count >= 3, let last = attrs.last,
              attrs[0].starts(with: "c=".utf8), attrs[1].starts(with: "r=".utf8), last.starts(with: "p=".utf8),
              let cb = Base64.decode(attrs[0].dropFirst(2), padding: .optional),
              let proof = Base64.decode(last.dropFirst(2), padding: .optional)
        else { return nil }
        // withoutProof ends right before ",p=".
        let withoutProof = Array(m[..<(last.startIndex - 1)])
        return ClientFinal(channelBinding: cb, nonce: Array(attrs[1].dropFirst(2)), withoutProof: withoutProof, proof: proof)
    }
}
