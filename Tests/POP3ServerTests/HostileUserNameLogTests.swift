import Logging
import Testing
@testable import POP3Server

/// Issue 13 (logs): a user name as a client sent it (any octets, through SASL PLAIN or LOGIN)
/// stays inside its one `user=` field of the failed-login line: no second line, no field of
/// its own, exactly recoverable up to `LoggedOctets.maxOctets`, visibly cut beyond.
@Suite struct HostileUserNameLogTests {
    /// The failed-login line as `authFailed` builds it, rendered by the stderr handler.
    func failedLoginLine(_ name: [UInt8]) -> String {
        var fields: Logger.Metadata = ["connection.id": "7", "mechanism": "PLAIN", "client": "127.0.0.9:4000"]
        fields.setUserName(name)
        return StderrLogHandler(label: "test", level: .debug).render(level: .notice, message: "login failed", metadata: fields)
    }

    /// Splits the fields after the message as a logfmt reader does: `key=token` or
    /// `key="…"` with backslash escapes; returns nil when the text is not that.
    func fields(of line: String) -> [(String, String)]? {
        guard let start = line.range(of: "notice login failed ") else { return nil }
        var rest = Substring(line[start.upperBound...])
        var out: [(String, String)] = []
        while !rest.isEmpty {
            guard let eq = rest.firstIndex(of: "=") else { return nil }
            let key = String(rest[..<eq])
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "\\" {
                        guard let next = rest.first else { return nil }
                        value.append("\\"); value.append(next)
                        rest = rest.dropFirst()
                    } else if c == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(c)
                    }
                }
                guard closed else { return nil }
            } else {
                let end = rest.firstIndex(of: " ") ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            out.append((key, value))
            if rest.first == " " { rest = rest.dropFirst() } else if !rest.isEmpty { return nil }
        }
        return out
    }

    /// Undoes `LogEscaping.escape` (quoted form): the octets the client sent.
    func unescape(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        func hex(_ b: UInt8) -> UInt8 { b <= 0x39 ? b - 0x30 : b - 0x61 + 10 }
        while i < bytes.count {
            guard bytes[i] == 0x5C, i + 1 < bytes.count else { out.append(bytes[i]); i += 1; continue }
            switch bytes[i + 1] {
            case UInt8(ascii: "n"): out.append(0x0A); i += 2
            case UInt8(ascii: "r"): out.append(0x0D); i += 2
            case UInt8(ascii: "t"): out.append(0x09); i += 2
            case UInt8(ascii: "x"): out.append(hex(bytes[i + 2]) << 4 | hex(bytes[i + 3])); i += 4
            case UInt8(ascii: "u"):
                let v = bytes[(i + 2)..<(i + 6)].reduce(UInt32(0)) { $0 << 4 | UInt32(hex($1)) }
                out += Array(String(Unicode.Scalar(v)!).utf8); i += 6
            default: out.append(bytes[i + 1]); i += 2
            }
        }
        return out
    }

    static let hostile: [[UInt8]] = [
        Array("evil\r\n2026-11-29T00:00:00.000Z notice login failed client=6.6.6.6:1 user=x".utf8),
        Array("a\nb".utf8),
        Array("a=b".utf8),
        Array(#"say "hi" and 'bye'"#.utf8),
        Array("x client=1.2.3.4".utf8),
        Array("x\" client=1.2.3.4:5 user=\"y".utf8),
        [0x61, 0x00, 0x62],  // NUL
        [0x61, 0xFF, 0xFE, 0xC0, 0xAF, 0x62],  // not UTF-8
        [0x5C, 0x78, 0x66, 0x66],  // a literal backslash-x-f-f: not an escape
        Array("\u{85}\u{2028}\u{1B}[31m".utf8),
        Array("".utf8),
        Array(repeating: UInt8(ascii: "n"), count: 256),  // the longest name logged whole
    ]

    @Test(arguments: hostile)
    func aHostileNameStaysInItsFieldAndIsRecoverable(name: [UInt8]) throws {
        let line = failedLoginLine(name)
        #expect(!line.utf8.contains(0x0A) && !line.utf8.contains(0x0D) && !line.utf8.contains(0))
        let parsed = try #require(fields(of: line), "\(line)")
        #expect(parsed.map(\.0) == ["client", "connection.id", "mechanism", "user"], "\(line)")
        #expect(parsed.first?.1 == "127.0.0.9:4000")
        #expect(unescape(parsed.last?.1 ?? "") == name, "\(line)")
    }

    @Test func invalidUTF8IsLoggedAsItsOctetsNotAsReplacementCharacters() {
        let line = failedLoginLine([0x61, 0xFF, 0x62])
        #expect(line.hasSuffix(#" user="a\xffb""#), "\(line)")
        #expect(!line.contains("\u{FFFD}"))
    }

    @Test func aNameOverTheLimitIsCutAndSaysSo() throws {
        let name = Array(repeating: UInt8(ascii: "n"), count: 300)
        let line = failedLoginLine(name)
        let parsed = try #require(fields(of: line))
        #expect(parsed.map(\.0) == ["client", "connection.id", "mechanism", "user", "user.truncated"])
        #expect(parsed[3].1 == String(repeating: "n", count: LoggedOctets.maxOctets))
        #expect(parsed[4].1 == "300")
    }

    @Test func aCutNameEndsOnACharacterBoundary() {
        // 255 "a" then "é" (2 octets): octet 256 is the first half of "é", which is dropped.
        let name = Array(repeating: UInt8(ascii: "a"), count: 255) + Array("éé".utf8)
        let logged = LoggedOctets(name)
        #expect(logged.octets == Array(repeating: UInt8(ascii: "a"), count: 255))
        #expect(logged.isTruncated && logged.fullCount == 259)
        // Not UTF-8 at the cut: cut at the limit.
        let junk = Array(repeating: UInt8(0x80), count: 300)
        #expect(LoggedOctets(junk).octets.count == LoggedOctets.maxOctets)
    }

    @Test func valueOfBytesQuotesLikeValueOfText() {
        for text in ["alice", "", "a b", "a=b", #"q"q"#, "x\r\ny", "café", "a\\b"] {
            #expect(LogEscaping.value(bytes: Array(text.utf8)) == LogEscaping.value(text))
        }
        #expect(LogEscaping.value(bytes: [0x61, 0xFF]) == #""a\xff""#)
    }
}
