@testable import Auth
import FuzzSupport
import Glibc

// Dovecot's passwd-file as `PasswdFile.parse` reads it (start-up and every SIGHUP, off the
// loop). The input is the file. Invariants:
// - every line that is not blank or a comment gives exactly one entry or one diagnostic (a
//   duplicate user is a diagnostic: the first line wins), diagnostics in line order within
//   the file;
// - every entry is found by its name's octets, with a name of no blanks or controls;
// - no accepted secret has a cost above the named caps (`CostLimits`: bcrypt cost,
//   SHA-crypt rounds, SCRAM iterations), read here independently of `SecretCheck`, since a
//   cost a stranger can make us pay per login is the reason the caps exist;
// - `usersByScheme` counts every entry once; the dummy entry has a scheme some user has.

/// Digits after `key` up to the next `$` as an exact (arbitrary-length) comparison with
/// `limit`: true when the value is above it. nil when there is no such field.
func above(_ text: [UInt8], after key: String, limit: Int) -> Bool? {
    let k = Array(key.utf8)
    guard text.count >= k.count, let start = (0...(text.count - k.count)).first(where: { text[$0..<($0 + k.count)].elementsEqual(k) }) else {
        return nil
    }
    var digits = text[(start + k.count)...].prefix { $0 >= 0x30 && $0 <= 0x39 }
    while digits.first == 0x30 && digits.count > 1 { digits.removeFirst() }
    let limitText = Array(String(limit).utf8)
    if digits.count != limitText.count { return digits.count > limitText.count }
    return digits.lexicographicallyPrecedes(limitText) == false && !digits.elementsEqual(limitText)
}

func checkCost(_ entry: UserEntry) {
    let secret = entry.secret
    switch entry.scheme {
    case .blfCrypt, .crypt:
        // $2a$, $2b$, $2x$, $2y$ with a two-digit cost.
        if secret.count >= 7, secret[0] == UInt8(ascii: "$"), secret[1] == UInt8(ascii: "2"), secret[3] == UInt8(ascii: "$"),
           let cost = Int(String(decoding: secret[4..<6], as: UTF8.self)) {
            check(cost <= CostLimits.maxBcryptCost, "bcrypt cost \(cost) accepted: \(show(secret))")
        }
        fallthrough
    case .sha256Crypt, .sha512Crypt:
        if secret.starts(with: "$5$".utf8) || secret.starts(with: "$6$".utf8),
           let over = above(secret, after: "$rounds=", limit: CostLimits.maxSHACryptRounds) {
            // libxcrypt reads rounds= only right after the prefix.
            if secret.starts(with: "$5$rounds=".utf8) || secret.starts(with: "$6$rounds=".utf8) {
                check(!over, "SHA-crypt rounds above the cap accepted: \(show(secret))")
            }
        }
    case .scramSHA256:
        guard let scram = ScramSecret(secret) else { fail("SCRAM secret that does not parse accepted: \(show(secret))") }
        check(scram.iterations >= 1 && scram.iterations <= CostLimits.maxPBKDF2Iterations, "SCRAM iterations \(scram.iterations)")
    default:
        break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPasswd(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    let (file, diagnostics) = PasswdFile.parse(bytes, path: "fuzz")
    let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    var meaningful = 0
    var firstLine: [UserName: Int] = [:]  // name -> its first line
    for (number, raw) in lines.enumerated() {
        var line = raw
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        let first = line.first { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        guard let first, first != UInt8(ascii: "#") else { continue }
        meaningful += 1
        // The name is everything before the first colon, as the file says it.
        let name = line.prefix { $0 != UInt8(ascii: ":") }
        guard let text = String(validating: name, as: UTF8.self), !text.isEmpty else { continue }
        let key = UserName(text)
        if firstLine[key] == nil { firstLine[key] = number + 1 }
    }
    check(file.count + diagnostics.count == meaningful,
          "\(file.count) entries + \(diagnostics.count) diagnostics for \(meaningful) lines")
    var previous = 0
    for d in diagnostics {
        check(d.line > previous && d.line <= lines.count, "diagnostic line \(d.line) after \(previous) of \(lines.count)")
        check(d.path == "fuzz", "diagnostic path")
        previous = d.line
    }
    var found = 0
    for key in firstLine.keys {
        guard let entry = file.lookup(key) else { continue }
        found += 1
        check(UserName(entry.user) == key, "lookup returns another user")
        check(!entry.user.isEmpty && entry.user.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7F }, "user name \(entry.user.debugDescription)")
        checkCost(entry)
    }
    check(found == file.count, "\(file.count) entries, \(found) found by the name of their first line")
    let byScheme = file.usersByScheme
    check(byScheme.values.reduce(0, +) == file.count, "usersByScheme \(byScheme) for \(file.count) users")
    if file.count > 0 {
        check(byScheme[file.dummy.scheme] != nil, "dummy scheme \(file.dummy.scheme) that no user has")
    }
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzPasswd))
