/// Where the session and the encoders write protocol bytes.
///
/// The glue implements this over the connection's output queue, so a reply is
/// copied once, straight from a `StaticString` or a stack buffer into the
/// queue: no `String` is built per command on the hot path.
public protocol ReplySink {
    mutating func write(_ bytes: UnsafeRawBufferPointer)
}

extension ReplySink {
    /// Writes a literal without allocating (StaticString is stored in the binary).
    @inlinable
    public mutating func write(_ text: StaticString) {
        text.withUTF8Buffer { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes `value` in decimal through a stack buffer (20 digits hold any Int64).
    public mutating func write(decimal value: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 21) { buffer in
            var magnitude = value.magnitude
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(truncatingIfNeeded: 0x30 &+ magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            if value < 0 {
                index -= 1
                buffer[index] = UInt8(ascii: "-")
            }
            write(UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[index...]))
        }
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
