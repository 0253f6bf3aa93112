import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif

/// Shared pieces of the fuzz targets: invariant checks that abort with a message (libFuzzer
/// reports the abort as a crash and saves the input as `crash-<sha1>`), and a reader that
/// takes option bytes from the front of an input.

/// Stops the process with `message` on stderr: an invariant of the code under test is broken.
public func fail(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    let text = "fuzz invariant broken at \(file):\(line): \(message)\n"
    var copy = text
    copy.withUTF8 { utf8 in
        guard let base = utf8.baseAddress else { return }
        var offset = 0
        while offset < utf8.count {
            let n = write(2, base + offset, utf8.count - offset)
            if n <= 0 { break }
            offset += n
        }
    }
    abort()
}

/// `fail(message)` unless `condition` holds.
@inline(__always)
public func check(_ condition: Bool, _ message: @autoclosure () -> String,
                  file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fail(message(), file: file, line: line) }
}

/// The input libFuzzer passed, copied into an array (the targets' parsers take arrays).
public func inputBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Reads option bytes from the front of an input; past the end it reads zeros, so every
/// input, even an empty one, is a valid test case.
public struct FuzzReader {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The next octet, 0 past the end.
    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next `count` octets (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + max(0, count))
        defer { position = end }
        return Array(bytes[position..<end])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] {
        defer { position = bytes.count }
        return Array(bytes[min(position, bytes.count)...])
    }

    /// A piece whose length is the next octet (a length-prefixed field), then the octets.
    public mutating func field() -> [UInt8] {
        take(Int(byte()))
    }
}

/// Bytes as a readable literal for failure messages: printable ASCII as is, the rest `\xNN`,
/// cut after `limit` octets.
public func show(_ bytes: some Collection<UInt8>, limit: Int = 300) -> String {
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = [UInt8(ascii: "\"")]
    for b in bytes.prefix(limit) {
        if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") && b != UInt8(ascii: "\"") {
            out.append(b)
        } else {
            out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
        }
    }
    out.append(UInt8(ascii: "\""))
    if bytes.count > limit { out += Array("...(\(bytes.count) octets)".utf8) }
    return String(decoding: out, as: UTF8.self)
}

/// The index of the first CR LF in `bytes` from `start`, or nil.
public func indexOfCRLF(_ bytes: [UInt8], from start: Int) -> Int? {
    var i = start
    while i + 1 < bytes.count {
        if bytes[i] == 0x0D && bytes[i + 1] == 0x0A { return i }
        i += 1
    }
    return nil
}

/// One fuzz input: the octets and their count, as libFuzzer passes them.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer's driver on `target` with the process's arguments (libFuzzer's flags,
/// corpus directories, or files to replay) and returns its exit status.
public func runFuzzer(_ target: FuzzTarget) -> CInt {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv, target)
}
