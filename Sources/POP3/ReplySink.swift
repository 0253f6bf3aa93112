import ByteCodec

/// Where the session and the encoders write protocol bytes.
///
/// The glue implements this over the connection's output queue, so a reply is
/// copied once, straight from a `StaticString` or a stack buffer into the
/// queue: no `String` is built per command on the hot path.
public protocol ReplySink {
    /// Appends `bytes` (octets as they go on the wire; the sink copies them before returning).
    mutating func write(_ bytes: UnsafeRawBufferPointer)

    /// Free space the caller may write into in place, then count with `commitSpace`
    /// (`MessageEncoder`'s hot path: one copy per line, CRLF and the stuffing dot stored
    /// inline). Any size, 1 octet included; empty when the sink has none to lend (the
    /// default), and the caller then writes with `write(_:)`. Valid until the next call on
    /// the sink.
    mutating func freeSpace() -> UnsafeMutableRawBufferPointer

    /// Counts the first `count` octets of the last `freeSpace()` as written
    /// (0 ≤ `count` ≤ its size). Must come before any other call on the sink.
    mutating func commitSpace(_ count: Int)
}

extension ReplySink {
    /// No space to lend: every octet goes through `write(_:)`.
    @inlinable
    public mutating func freeSpace() -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    /// Nothing lent, nothing to count (`count` is 0 for a sink that lends no space).
    @inlinable
    public mutating func commitSpace(_ count: Int) {}

    /// Writes a literal without allocating (StaticString is stored in the binary).
    @inlinable
    public mutating func write(_ text: StaticString) {
        text.withUTF8Buffer { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes `value` in decimal (`-` first when negative) through a stack buffer
    /// (`Digits.withDecimal`): no allocation per reply.
    public mutating func write(decimal value: Int) {
        Digits.withDecimal(value) { write($0) }
    }

    /// Writes the octets of `bytes`.
    public mutating func write(bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes text that did not come from a literal (user names, configured banners).
    /// Not for the per-command hot path.
    public mutating func write(string: String) {
        var copy = string
        copy.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes text that may hold CR, LF or other controls (an error message from storage),
    /// replacing each control byte by a space, so a reply can never be split in two
    /// lines and desynchronise a pipelining client (RFC 2449 §6.6).
    public mutating func write(sanitized string: String) {
        var copy = string
        copy.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count where utf8[index] < 0x20 || utf8[index] == 0x7F {
                write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[start..<index]))
                write(" ")
                start = index + 1
            }
            write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[start...]))
        }
    }
}

/// A sink that appends to an array: for tests, the client side and small replies.
public struct ByteArraySink: ReplySink, Sendable {
    /// Everything written so far.
    public var bytes: [UInt8]

    /// A sink that appends to `bytes`.
    public init(bytes: [UInt8] = []) {
        self.bytes = bytes
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) {
        self.bytes.append(contentsOf: bytes)
    }

    /// The written bytes as text (tests and diagnostics).
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}
