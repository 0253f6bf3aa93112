extension Array where Element == UInt8 {
    /// The array cut into consecutive pieces of `size` octets, the last possibly shorter (nil:
    /// one piece): how the tables are fed whole, byte by byte and in chunks (ARCHITECTURE.md,
    /// convention 8).
    public func pieces(of size: Int?) -> [ArraySlice<UInt8>] {
        let step = Swift.max(1, size ?? count)
        return stride(from: 0, to: count, by: step).map { self[$0..<Swift.min(count, $0 + step)] }
    }

    /// The array cut into consecutive pieces of the given sizes (the property tests' random
    /// chunkings); octets beyond the sum of `sizes` are in no piece.
    public func pieces(sizes: [Int]) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = 0
        for size in sizes where start < count {
            let end = Swift.min(count, start + Swift.max(0, size))
            result.append(self[start..<end])
            start = end
        }
        return result
    }
}
