import Logging
import Testing
@testable import POP3Server

/// Finding 5 of issue 9: client- and file-supplied text reaches the log. Every line break a
/// log reader might honour, and every control, must come out escaped, at the byte level.
@Suite struct LogEscapingTests {
    /// No raw byte of the output is a C0 control or DEL, and no scalar is a C1 control or
    /// U+2028/U+2029.
    func isOneSafeLine(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }
            && s.unicodeScalars.allSatisfy { !(0x80...0x9F).contains($0.value) && $0.value != 0x2028 && $0.value != 0x2029 }
    }

    @Test(arguments: [
        ("a\r\nb", #"a\r\nb"#),  // "\r\n" is ONE Character in Swift: the old escaper missed it
        ("a\nb", #"a\nb"#),
        ("a\rb", #"a\rb"#),
        ("a\tb", #"a\tb"#),
        ("a\u{1B}[31mb", #"a\x1b[31mb"#),  // ESC: terminal control sequences
        ("a\u{0}b", #"a\x00b"#),
        ("a\u{7F}b", #"a\x7fb"#),
        ("a\u{85}b", #"a\u0085b"#),  // NEL
        ("a\u{9B}b", #"a\u009bb"#),  // C1 CSI
        ("a\u{2028}b", #"a\u2028b"#),
        ("a\u{2029}b", #"a\u2029b"#),
        ("a\\nb", #"a\\nb"#),  // a literal backslash-n is not an escape
        ("\r\n\u{0301}x", "\\r\\n\u{0301}x"),  // a combining mark after CR LF stays itself
    ])
    func messageTextIsEscaped(input: String, expected: String) {
        let out = LogEscaping.text(input)
        #expect(out == expected)
        #expect(isOneSafeLine(out))
    }

    @Test func crlfIsOneCharacterInSwift() {
        // The premise of the finding.
        #expect("\r\n".count == 1)
        #expect("\r\n".utf8.count == 2)
        #expect(LogEscaping.text("\r\n") == #"\r\n"#)
    }

    @Test func plainTextIsUnchanged() {
        for s in ["login failed", "café", "Kim", "\u{212A}im", "日本語", "user@example.org", ""] {
            #expect(LogEscaping.text(s) == s)
        }
    }

    @Test func valuesAreQuotedOnlyWhenNeeded() {
        #expect(LogEscaping.value("alice") == "alice")
        #expect(LogEscaping.value("café") == "café")
        #expect(LogEscaping.value("") == #""""#)
        #expect(LogEscaping.value("a b") == #""a b""#)
        #expect(LogEscaping.value("a=b") == #""a=b""#)
        #expect(LogEscaping.value(#"say "hi""#) == #""say \"hi\"""#)
        #expect(LogEscaping.value("x\r\nlogin ok user=root") == #""x\r\nlogin ok user=root""#)
        #expect(LogEscaping.value("a\\b") == #""a\\b""#)
        #expect(LogEscaping.value("\u{2028}") == #""\u2028""#)
        #expect(LogEscaping.value("\u{85}") == #""\u0085""#)
    }

    @Test func invalidUTF8IsEscapedByteByByte() {
        // Lone continuation, truncated sequence, overlong "/", surrogate, above U+10FFFF,
        // an overlong encoding of NEL (C1 85 would be U+0045 overlong; C2 85 is NEL).
        #expect(LogEscaping.escape(bytes: [0x61, 0x80, 0x62]) == #"a\x80b"#)
        #expect(LogEscaping.escape(bytes: [0x61, 0xE2, 0x80]) == #"a\xe2\x80"#)
        #expect(LogEscaping.escape(bytes: [0xC0, 0xAF]) == #"\xc0\xaf"#)
        #expect(LogEscaping.escape(bytes: [0xED, 0xA0, 0x80]) == #"\xed\xa0\x80"#)
        #expect(LogEscaping.escape(bytes: [0xF4, 0x90, 0x80, 0x80]) == #"\xf4\x90\x80\x80"#)
        #expect(LogEscaping.escape(bytes: [0xC1, 0x85]) == #"\xc1\x85"#)
        #expect(LogEscaping.escape(bytes: [0xC2, 0x85]) == #"\u0085"#)
        #expect(LogEscaping.escape(bytes: [0xE2, 0x80, 0xA8, 0x0D, 0x0A]) == #"\u2028\r\n"#)
        #expect(LogEscaping.escape(bytes: Array("héllo".utf8)) == "héllo")
        #expect(LogEscaping.escape(bytes: [0x22], quoting: true) == #"\""#)
        // A String decoded from invalid bytes carries U+FFFD, which is printable.
        let replaced = String(decoding: [0x61, 0xFF, 0x0A], as: UTF8.self)
        #expect(LogEscaping.text(replaced) == "a\u{FFFD}\\n")
    }

    @Test func everyScalarBelowU3000ComesOutOnOneSafeLine() {
        var all = ""
        for v in 0..<0x3000 {
            if let s = Unicode.Scalar(v) { all.unicodeScalars.append(s) }
        }
        #expect(isOneSafeLine(LogEscaping.text(all)))
        #expect(isOneSafeLine(LogEscaping.value(all)))
    }

    @Test func aRenderedLineEscapesMessageKeysAndValues() {
        let handler = StderrLogHandler(label: "test", level: .debug)
        let line = handler.render(
            level: .notice, message: "maildrop: /srv/mail/x\r\n2026-01-01T00:00:00.000Z info login ok user=root",
            metadata: ["user": "evil\r\n2026-01-01T00:00:00.000Z notice login failed client=192.0.2.1",
                       "client": "127.0.0.1:4000"])
        #expect(isOneSafeLine(line))
        #expect(!line.utf8.contains(0x0A) && !line.utf8.contains(0x0D))
        #expect(line.hasSuffix(#" client=127.0.0.1:4000 user="evil\r\n2026-01-01T00:00:00.000Z notice login failed client=192.0.2.1""#))
        #expect(line.contains(#"notice maildrop: /srv/mail/x\r\n2026"#))
    }
}
