import Glibc

/// A file name or unique name as a set or dictionary key, hashed and compared as its UTF-8
/// octets (issue 16's rule, ARCHITECTURE "User names and other identifiers are compared as
/// bytes"): a Swift `String` key compares by canonical equivalence, which would make two
/// Maildir files whose names differ only in Unicode normalization one message (the second
/// hidden from the listing, its size cached under the other's name). Wraps the `String`
/// without copying it; hashing feeds the octets to the hasher in one block.
struct ByteName: Hashable, Comparable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    let string: String

    init(_ string: String) { self.string = string }
    init(stringLiteral value: String) { self.string = value }

    var description: String { string }

    func hash(into hasher: inout Hasher) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            // Not native UTF-8 (a bridged string): the same octets in one block, so that equal
            // names hash alike whatever their storage.
            Array(string.utf8).withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    static func == (a: ByteName, b: ByteName) -> Bool {
        let x = a.string.utf8, y = b.string.utf8
        guard x.count == y.count else { return false }
        let fast: Bool? = x.withContiguousStorageIfAvailable { px in
            y.withContiguousStorageIfAvailable { py in
                guard let p = px.baseAddress, let q = py.baseAddress else { return true }  // both empty
                return memcmp(p, q, px.count) == 0
            }
        } ?? nil
        return fast ?? x.elementsEqual(y)
    }

    /// Octet order (for valid UTF-8 the order of the code points), as the size cache is written.
    static func < (a: ByteName, b: ByteName) -> Bool {
        a.string.utf8.lexicographicallyPrecedes(b.string.utf8)
    }
}
