import Glibc
@testable import Maildrop
import TestSupport

/// Writes `bytes` to `path` directly (no tmp/ step), replacing it.
func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return }
    bytes.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count, let base = raw.baseAddress {
            let n = write(fd, base + off, raw.count - off)
            if n <= 0 { break }
            off += n
        }
    }
    close(fd)
}

func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

func listNames(_ dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: &e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if !name.hasPrefix(".") { names.append(name) }
    }
    return names.sorted()
}

/// Reads the whole message through `reader` in chunks of `chunk` bytes.
func readAll(_ reader: MessageReader, chunk: Int = 4096) throws -> [UInt8] {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 1)
    defer { buffer.deallocate() }
    var out: [UInt8] = []
    while true {
        let n = try reader.read(into: buffer)
        if n == 0 { break }
        out.append(contentsOf: buffer[0..<n])
    }
    return out
}

/// A Maildir in a temp directory with a writer for it.
struct Fixture {
    let temp = TempDirectory(prefix: "maildrop-test")
    var root: String { temp.path + "/Maildir" }
    var writer: MaildirWriter

    init() throws {
        let t = temp
        writer = try MaildirWriter(root: t.path + "/Maildir")
    }
}

/// Reference CRLF conversion, written the slow obvious way.
func crlf(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var prev: UInt8 = 0
    for b in bytes {
        if b == 0x0A && prev != 0x0D { out.append(0x0D) }
        out.append(b)
        prev = b
    }
    if let last = bytes.last, last != 0x0A { out += [0x0D, 0x0A] }
    return out
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The whole file at `path` (`O_NONBLOCK`: a FIFO reads as empty rather than blocking); nil
/// when it cannot be opened. The one file reader of these tests.
func fileBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}
