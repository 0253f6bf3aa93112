import Testing
@testable import Auth

@Suite struct SchemeTests {
    /// Stored forms of the password "secret": openssl passwd -1/-5/-6, Python
    /// crypt (DES, bcrypt), hashlib for the SHA/MD5 families.
    static let vectors: [(String, PasswordScheme)] = [
        ("{PLAIN}secret", .plain),
        ("{CLEARTEXT}secret", .plain),
        ("{PLAIN.B64}c2VjcmV0", .plain),
        ("{CRYPT}abNANd1rDfiNc", .crypt),
        ("abNANd1rDfiNc", .crypt),
        ("{CRYPT}$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.", .crypt),
        ("{MD5-CRYPT}$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1", .md5Crypt),
        ("{SHA256-CRYPT}$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.", .sha256Crypt),
        ("{SHA512-CRYPT}$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.", .sha512Crypt),
        ("{SSHA}1G904nLkTkGWjKNnQuB/hpWXC/hzYWx0c2FsdA==", .ssha),
        ("{SSHA256}oBmrdHcA6OZEkkCLeXh71YAerbvhXz1qqwjrPsXmEtNzYWx0c2FsdA==", .ssha256),
        ("{SSHA512}aCu7JRc+kLsuEmFs1zTY+AiP7DSGnjjG+dH28Dp+E5usqoAixeTPihKqZmkWal4mUfp63tqvCAkFV1LKTDFH6XNhbHRzYWx0", .ssha512),
        ("{SMD5}VAfQ6nCkaw9o3u+x706wnXNhbHRzYWx0", .smd5),
        ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", .sha1),
        ("{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=", .sha256),
        ("{sha256.hex}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", .sha256),
        ("{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==", .sha512),
        ("{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", .ldapMD5),
        ("{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", .plainMD5),
        // PLAIN-MD5 written in base64 is accepted too, as Dovecot does.
        ("{PLAIN-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", .plainMD5),
    ]

    static func entry(_ stored: String) throws -> UserEntry {
        let (file, diags) = PasswdFile.parse(Array("u:\(stored)".utf8), path: "t")
        #expect(diags.isEmpty, "\(diags)")
        return try #require(file.lookup("u"))
    }

    @Test(arguments: vectors)
    func everySchemeVerifiesRightAndRejectsWrong(stored: String, scheme: PasswordScheme) throws {
        let e = try Self.entry(stored)
        #expect(e.scheme == scheme)
        #expect(verify(password: Array("secret".utf8), entry: e))
        #expect(!verify(password: Array("secreT".utf8), entry: e))
        #expect(!verify(password: [], entry: e))
        #expect(!verify(password: Array("secret\0".utf8), entry: e))
    }

    @Test func bcryptCost12Verifies() throws {
        let e = try Self.entry("{BLF-CRYPT}$2y$12$abcdefghijklmnopqrstuuT1Iwu6o8Wx7BoOyIMHfgVJq6JO/IJhW")
        #expect(verify(password: Array("secret".utf8), entry: e))
        #expect(!verify(password: Array("Secret".utf8), entry: e))
    }

    @Test func wrongDigestLengthOrPrefixIsDiagnosed() {
        for stored in ["{SHA256}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "{MD5-CRYPT}$6$abc$def", "{SCRAM-SHA-256}4096,abc",
                       "{SHA.nope}x", "{SSHA512}c2FsdA=="] {
            let (file, diags) = PasswdFile.parse(Array("u:\(stored)".utf8), path: "t")
            #expect(file.lookup("u") == nil, "\(stored)")
            #expect(diags.count == 1, "\(stored)")
        }
    }

    @Test(arguments: ["PLAIN", "CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "SSHA", "SSHA256",
                      "SSHA512", "SHA", "SHA256", "SHA512", "PLAIN-MD5", "LDAP-MD5", "SMD5", "SCRAM-SHA-256",
                      "SHA256.HEX", "SSHA512.hex", "PLAIN-MD5.B64", "PLAIN.b64"])
    func hashPasswordRoundTrips(scheme: String) throws {
        let password = scheme == "PLAIN" ? "p@ss;wörd" : "p@ss:wörd"
        let line = try hashPassword(password, scheme: scheme)
        #expect(line.hasPrefix("{"))
        let e = try Self.entry(line)
        #expect(verify(password: Array(password.utf8), entry: e))
        #expect(!verify(password: Array("p@ss:word".utf8), entry: e))
        // Salted schemes draw a fresh salt each time.
        if !["PLAIN", "SHA", "SHA256", "SHA512", "PLAIN-MD5", "LDAP-MD5", "SHA256.HEX", "PLAIN-MD5.B64", "PLAIN.b64"].contains(scheme) {
            #expect(try hashPassword(password, scheme: scheme) != line)
        }
    }

    @Test func hashPasswordDefaultsToSHA512CryptAndBcryptCost12() throws {
        let line = try hashPassword("x")
        #expect(line.hasPrefix("{SHA512-CRYPT}$6$"))
        let blf = try hashPassword("x", scheme: "BLF-CRYPT")
        #expect(blf.hasPrefix("{BLF-CRYPT}$2y$12$"))
        #expect(verify(password: Array("x".utf8), entry: try Self.entry(blf)))
        #expect(throws: HashPasswordError.unknownScheme("ROT13")) { try hashPassword("x", scheme: "ROT13") }
        #expect(throws: HashPasswordError.notStorable) { try hashPassword("a:b", scheme: "PLAIN") }
        #expect(try hashPassword("a:b", scheme: "PLAIN.B64") == "{PLAIN.B64}YTpi")
        #expect(throws: HashPasswordError.passwordContainsNUL) { try hashPassword([0x61, 0], scheme: "SHA512-CRYPT") }
    }
}
