import POP3
import Testing
import TestSupport

/// RETR's copy loop (`MessageEncoder.encodeRETR`: 16-octet steps into lent space, CR LF and
/// the stuffing dot stored inline, `contentOctets` from totals) against main's encoder before
/// issue 17 (`ReferenceMessageEncoder`), at the places where the loop hands over to the
/// line-by-line path or stops: lent spaces around its 18-octet step room, chunks around its
/// 16-octet step, lines of exactly 16 and 32 octets, a CR at a chunk's end, a `.` right after a
/// chunk boundary, space ending right after a CR LF. The differential suite's spaces are mostly
/// too small for the loop; these are not.
@Suite struct MessageEncoderRETRLoopTests {
    /// Lent spaces: too small for a step (17), just enough (18, 19), and sizes that end in the
    /// middle of, or right after, the lines below.
    static let spaces = [17, 18, 19, 20, 21, 33, 34, 35, 36, 50, 51, 52, 64, 4096]
    /// Input chunk sizes around one and two steps, and the whole message.
    static let chunks: [Int?] = [nil, 1, 15, 16, 17, 18, 31, 32, 33, 34, 35, 49, 50]

    static func line(_ length: Int, _ fill: UInt8 = UInt8(ascii: "x")) -> [UInt8] {
        (0..<length).map { fill &+ UInt8($0 % 7) }
    }

    static func checkRETR(_ message: [UInt8], label: String) {
        for chunk in chunks {
            for space in spaces {
                MessageEncoderDifferentialTests.check(message, pieces: message.pieces(of: chunk), bodyLines: nil,
                                                      workarounds: [], firstPiece: space, piece: space,
                                                      label: "\(label) chunk \(chunk ?? -1)")
            }
        }
    }

    /// Lines of 15, 16, 17, 31, 32 and 33 octets (a line end in a step's last octet, in the
    /// next step's first, right after two steps), each with LF, CRLF and bare CR ends, some
    /// starting with `.`, one of them only a `.`.
    @Test func linesAroundTheStepSize() {
        for length in [15, 16, 17, 31, 32, 33] {
            for end in [[0x0A], [0x0D, 0x0A], [0x0D]] as [[UInt8]] {
                var message: [UInt8] = []
                for index in 0..<6 {
                    if index % 2 == 1 { message.append(UInt8(ascii: ".")) }
                    message += Self.line(length) + end
                }
                message += [UInt8(ascii: ".")] + end + Self.line(length)
                Self.checkRETR(message, label: "lines of \(length), end \(end)")
            }
        }
    }

    /// A CR as a chunk's last octet (its LF, a `.` or text starting the next chunk), a `.` as
    /// the first octet of a chunk at a line start, and an empty line at a chunk boundary.
    @Test func lineEndsAndDotsAtChunkBoundaries() {
        let head = Self.line(40)
        let cases: [(String, [UInt8])] = [
            ("CR | LF", head + [0x0D, 0x0A] + Self.line(20) + [0x0A]),
            ("CR | dot", head + [0x0D, UInt8(ascii: "."), UInt8(ascii: ".")] + Self.line(20) + [0x0D]),
            ("CR | text", head + [0x0D] + Self.line(20) + [0x0D, 0x0D, 0x0A]),
            ("LF | dot", head + [0x0A, UInt8(ascii: ".")] + Self.line(30) + [0x0A, UInt8(ascii: ".")]),
            ("CRLF | empty line", head + [0x0D, 0x0A, 0x0D, 0x0A, 0x0A] + Self.line(17)),
        ]
        for (label, message) in cases {
            // Cut right after octet 40 and 41 (the line end) as well as in even chunks.
            for cut in [40, 41, 42] {
                let pieces = [message[0..<cut], message[cut...]]
                for space in Self.spaces {
                    MessageEncoderDifferentialTests.check(message, pieces: pieces, bodyLines: nil, workarounds: [],
                                                          firstPiece: space, piece: space,
                                                          label: "\(label) cut at \(cut)")
                }
            }
            Self.checkRETR(message, label: label)
        }
    }

    /// Every lent-space size from 1 to 80 on a message of 16- and 32-octet lines, so the space
    /// ends at every offset of a line: inside it, on its CR, right after its CR LF, on the
    /// stuffing dot of the next line.
    @Test func spaceEndingAtEveryOffset() {
        var message: [UInt8] = []
        for index in 0..<8 {
            if index % 3 == 0 { message.append(UInt8(ascii: ".")) }
            message += Self.line(index % 2 == 0 ? 16 : 32) + (index % 4 < 2 ? [0x0D, 0x0A] : [0x0A])
        }
        for chunk in [nil, 16, 17, 64] as [Int?] {
            for first in [1, 17, 18, 19] {
                for space in 1...80 {
                    MessageEncoderDifferentialTests.check(message, pieces: message.pieces(of: chunk), bodyLines: nil,
                                                          workarounds: [], firstPiece: first, piece: space,
                                                          label: "chunk \(chunk ?? -1) first \(first) space \(space)")
                }
            }
        }
    }

    /// Random messages with long lines (runs of text up to 80 octets between the octets that
    /// matter) in random chunkings, into spaces the copy loop can use. Seeded.
    @Test(arguments: 0..<4) func randomLongLines(_ seed: UInt64) {
        var rng = SplitMix64(seed: 0x17E2_0000 + seed)
        let alphabet = MessageEncoderDifferentialTests.alphabet
        for round in 0..<40 {
            let length = Int(rng.next() % 600)
            var message: [UInt8] = []
            while message.count < length {
                if rng.next() % 2 == 0 {
                    message += Self.line(Int(rng.next() % 80))
                } else {
                    message.append(alphabet[Int(rng.next() % UInt64(alphabet.count))])
                }
            }
            let pieces = MessageEncoderDifferentialTests.randomPieces(message, &rng, maxPiece: 100)
            let first = 1 + Int(rng.next() % 40)
            let space = 17 + Int(rng.next() % 100)
            MessageEncoderDifferentialTests.check(message, pieces: pieces, bodyLines: nil,
                                                  workarounds: [], firstPiece: first, piece: space,
                                                  label: "seed \(seed) round \(round)")
        }
    }
}
