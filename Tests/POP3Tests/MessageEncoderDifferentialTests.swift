import POP3
import Testing
import TestSupport

/// A sink that lends its space in pieces, as the connection's output queue does: the first
/// piece is `firstPiece` octets (1 = the 1-octet tail of a nearly full chunk), every later one
/// `piece` octets. `write(_:)` fills the current piece and moves on, like `OutputSink`.
/// Eight canary octets after the lent space catch an encoder that writes past it.
struct PieceSink: ReplySink {
    static let canary: UInt8 = 0xEE
    static let canaryCount = 8

    /// Memory of a fixed size: lent space stays valid however the sink is used meanwhile.
    final class Storage {
        let memory: UnsafeMutableRawBufferPointer
        init(capacity: Int) {
            memory = .allocate(byteCount: capacity, alignment: 16)
            memory.initializeMemory(as: UInt8.self, repeating: 0)
        }
        deinit { memory.deallocate() }
    }

    private let storage: Storage
    private(set) var count = 0
    /// End of the current piece.
    private var limit: Int
    private let piece: Int
    /// The space `freeSpace()` lent and not yet counted (nil: none lent).
    private var lent: Range<Int>?
    private(set) var problems: [String] = []

    /// `capacity`: octets the whole output may take (the encoder at most doubles a message and
    /// adds 7 octets), plus room for the last piece and the canary.
    init(firstPiece: Int, piece: Int, capacity: Int) {
        self.piece = max(1, piece)
        limit = max(1, firstPiece)
        storage = Storage(capacity: capacity + limit + self.piece + Self.canaryCount)
    }

    var bytes: [UInt8] { Array(storage.memory[0..<count]) }

    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        if lent != nil { problems.append("write(_:) while space was lent and not counted") }
        for byte in bytes {
            if count == limit { limit += piece }
            guard count < storage.memory.count else {
                problems.append("output beyond the capacity")
                return
            }
            storage.memory[count] = byte
            count += 1
        }
    }

    mutating func freeSpace() -> UnsafeMutableRawBufferPointer {
        if lent != nil { problems.append("freeSpace() twice without commitSpace") }
        if count == limit { limit += piece }
        guard limit + Self.canaryCount <= storage.memory.count, let base = storage.memory.baseAddress else {
            problems.append("output beyond the capacity")
            return UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        for index in limit..<(limit + Self.canaryCount) { storage.memory[index] = Self.canary }
        lent = count..<limit
        return UnsafeMutableRawBufferPointer(start: base + count, count: limit - count)
    }

    mutating func commitSpace(_ written: Int) {
        guard let space = lent else {
            if written != 0 { problems.append("commitSpace(\(written)) with no space lent") }
            return
        }
        lent = nil
        if written < 0 || written > space.count {
            problems.append("commitSpace(\(written)) of \(space.count) lent")
            return
        }
        for index in limit..<(limit + Self.canaryCount) where storage.memory[index] != Self.canary {
            problems.append("wrote past the lent space (offset \(index - space.lowerBound) of \(space.count))")
            break
        }
        count += written
    }
}

/// What one encoder did with a message fed in given pieces, as the glue feeds it (it stops
/// reading once `isComplete`).
struct EncoderRun: Equatable, CustomStringConvertible {
    var bytes: [UInt8]
    var contentOctets: Int
    /// `isComplete` after each `encode` call, then after `finish`.
    var completeAfter: [Bool]
    var fed: Int

    var description: String {
        "\(contentOctets) octets, fed \(fed), complete \(completeAfter), "
            + String(decoding: bytes, as: UTF8.self).debugDescription
    }
}

func runReference(_ message: [UInt8], pieces: [ArraySlice<UInt8>], bodyLines: Int?, workarounds: ClientWorkarounds) -> EncoderRun {
    var encoder = ReferenceMessageEncoder(bodyLines: bodyLines, workarounds: workarounds)
    var sink = ByteArraySink()
    var run = EncoderRun(bytes: [], contentOctets: 0, completeAfter: [], fed: 0)
    for piece in pieces where !encoder.isComplete {
        piece.withUnsafeBytes { encoder.encode($0, out: &sink) }
        run.fed += piece.count
        run.completeAfter.append(encoder.isComplete)
    }
    encoder.finish(out: &sink)
    run.completeAfter.append(encoder.isComplete)
    run.bytes = sink.bytes
    run.contentOctets = encoder.contentOctets
    return run
}

func runCurrent(_ message: [UInt8], pieces: [ArraySlice<UInt8>], bodyLines: Int?, workarounds: ClientWorkarounds,
                out sink: inout some ReplySink) -> EncoderRun {
    var encoder = MessageEncoder(bodyLines: bodyLines, workarounds: workarounds)
    var run = EncoderRun(bytes: [], contentOctets: 0, completeAfter: [], fed: 0)
    for piece in pieces where !encoder.isComplete {
        piece.withUnsafeBytes { encoder.encode($0, out: &sink) }
        run.fed += piece.count
        run.completeAfter.append(encoder.isComplete)
    }
    encoder.finish(out: &sink)
    run.completeAfter.append(encoder.isComplete)
    run.contentOctets = encoder.contentOctets
    return run
}

/// Today's encoder against the encoder of `main` before issue 17 (`ReferenceMessageEncoder`):
/// octet-identical output, content octets and completion on every input, every input
/// chunking and every size of lent output space, through both of its paths (lines copied
/// into `freeSpace()`, lines written through `write(_:)`).
@Suite struct MessageEncoderDifferentialTests {
    /// Octets that matter to the encoder, with plain text between them.
    static let alphabet: [UInt8] = Array(".\r\n\0ab .\r\n".utf8) + [0x80]

    static let workaroundSets: [ClientWorkarounds] = [[], [.outlookNoNuls], [.oeNsEoh], [.outlookNoNuls, .oeNsEoh]]
    static let bodyLineCounts: [Int?] = [nil, 0, 1, 2, 5]

    static func randomMessage(_ rng: inout SplitMix64, maxLength: Int) -> [UInt8] {
        let length = Int(rng.next() % UInt64(maxLength + 1))
        var message: [UInt8] = []
        message.reserveCapacity(length)
        // Long runs of text now and then, so lines also straddle input chunks and lent spaces.
        while message.count < length {
            if rng.next() % 4 == 0 {
                let run = Int(rng.next() % 40)
                message.append(contentsOf: repeatElement(UInt8(ascii: "x"), count: min(run, length - message.count)))
            } else {
                message.append(alphabet[Int(rng.next() % UInt64(alphabet.count))])
            }
        }
        return message
    }

    /// `message` cut into random pieces of 1 to `maxPiece` octets.
    static func randomPieces(_ message: [UInt8], _ rng: inout SplitMix64, maxPiece: Int = 24) -> [ArraySlice<UInt8>] {
        var sizes: [Int] = []
        var total = 0
        while total < message.count {
            let size = 1 + Int(rng.next() % UInt64(maxPiece))
            sizes.append(size)
            total += size
        }
        return message.pieces(sizes: sizes)
    }

    static func check(_ message: [UInt8], pieces: [ArraySlice<UInt8>], bodyLines: Int?, workarounds: ClientWorkarounds,
                      firstPiece: Int, piece: Int, label: String) {
        let expected = runReference(message, pieces: pieces, bodyLines: bodyLines, workarounds: workarounds)
        var pieceSink = PieceSink(firstPiece: firstPiece, piece: piece, capacity: 2 * message.count + 16)
        var lent = runCurrent(message, pieces: pieces, bodyLines: bodyLines, workarounds: workarounds, out: &pieceSink)
        lent.bytes = pieceSink.bytes
        #expect(pieceSink.problems.isEmpty, "\(label): \(pieceSink.problems)")
        #expect(lent == expected, "\(label), space \(firstPiece)/\(piece): \(message)")
        var arraySink = ByteArraySink()
        var written = runCurrent(message, pieces: pieces, bodyLines: bodyLines, workarounds: workarounds, out: &arraySink)
        written.bytes = arraySink.bytes
        #expect(written == expected, "\(label), write(_:) only: \(message)")
    }

    /// The edge cases by name: empty message, lone CR and LF, CR without LF, CRLF split
    /// across chunks, dots at line starts and after a bare CR, a last line without a line
    /// end, NULs; each fed in every chunk size 1...12 and whole, into lent spaces of every
    /// size 1...12 after a 1-octet first tail.
    @Test func edgeCasesEveryChunkingAndSpace() {
        let cases = ["", ".", "\r", "\n", "\r\n", "\n\r", "\r\r", "..", ".\r", ".\n", "a", "a\r", "a\n", "a\r\n",
                     "a\rb", "a\r\r\nb", "a\r.\r\n", "a\n\r.x", ".\n..x\n.", "H: 1\n\nl1\nl2\nl3\n",
                     "H: 1\r\n\r\n.l1\r\nl2\r\n", "H: 1\nH: 2", "Subject: c\r\rbody\r", "\0", ".\0\r\0\n\0",
                     "x\0y\n\0\0\r\n.\0", String(repeating: "abcdefghij", count: 5) + "\r\n."]
        for text in cases {
            let message = Array(text.utf8)
            for chunk in [nil] + (1...12).map(Optional.some) {
                let pieces = message.pieces(of: chunk)
                for bodyLines in Self.bodyLineCounts {
                    for workarounds in Self.workaroundSets {
                        for space in 1...12 {
                            Self.check(message, pieces: pieces, bodyLines: bodyLines, workarounds: workarounds,
                                       firstPiece: 1, piece: space, label: "\(text.debugDescription) chunk \(chunk ?? -1)")
                        }
                    }
                }
            }
        }
    }

    /// Random messages over the octets that matter, in random chunkings and in every chunk
    /// size 1...N, into lent spaces of random sizes (1-octet tails included). Seeded: a
    /// failure names its seed.
    @Test(arguments: 0..<8) func randomMessages(_ seed: UInt64) {
        var rng = SplitMix64(seed: 0x17E0_0000 + seed)
        for round in 0..<60 {
            let message = Self.randomMessage(&rng, maxLength: 200)
            let bodyLines = Self.bodyLineCounts[Int(rng.next() % UInt64(Self.bodyLineCounts.count))]
            let workarounds = Self.workaroundSets[Int(rng.next() % UInt64(Self.workaroundSets.count))]
            let firstPiece = 1 + Int(rng.next() % 8)
            let piece = 1 + Int(rng.next() % 90)
            let label = "seed \(seed) round \(round)"
            Self.check(message, pieces: Self.randomPieces(message, &rng), bodyLines: bodyLines, workarounds: workarounds,
                       firstPiece: firstPiece, piece: piece, label: label + " random pieces")
            if round % 6 == 0 {
                for chunk in 1...40 {
                    Self.check(message, pieces: message.pieces(of: chunk), bodyLines: bodyLines, workarounds: workarounds,
                               firstPiece: firstPiece, piece: piece, label: label + " chunk \(chunk)")
                }
            }
        }
    }

    /// Lines far longer than the lent space and than an input chunk (a line goes through
    /// `write(_:)` when it does not fit), and the realistic shape: 76-octet lines, some
    /// starting with a dot, in 4 KiB input chunks into 1 KiB spaces.
    @Test func longLinesAndRealisticShape() {
        var rng = SplitMix64(seed: 0x17E1)
        var message: [UInt8] = []
        for line in 0..<400 {
            if rng.next() % 16 == 0 { message.append(UInt8(ascii: ".")) }
            let length = line % 50 == 0 ? 3000 : 76
            for _ in 0..<length { message.append(UInt8(ascii: "A") + UInt8(rng.next() % 26)) }
            message.append(contentsOf: line % 3 == 0 ? [0x0D, 0x0A] : [0x0A])
        }
        for (chunk, space) in [(4096, 1024), (65536, 16384), (100, 7), (7, 100)] {
            for workarounds in Self.workaroundSets {
                Self.check(message, pieces: message.pieces(of: chunk), bodyLines: nil, workarounds: workarounds,
                           firstPiece: 1, piece: space, label: "long lines chunk \(chunk) space \(space)")
            }
        }
    }
}
