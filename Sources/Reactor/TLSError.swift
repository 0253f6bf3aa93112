import CShim

/// A TLS context could not be built or a session could not be created; `message`
/// carries OpenSSL's reasons (file name, "no start line", "key values mismatch"...),
/// suitable for the log line that explains why a reload kept the old certificates.
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// OpenSSL's reasons (its error queue, as CShim recorded them), or our own sentence.
    public let message: String

    /// An error carrying `message`.
    public init(_ message: String) { self.message = message }

    /// `message`.
    public var description: String { message }

    /// The reason CShim recorded for the last failure on this thread.
    static func fromShim() -> TLSError {
        TLSError(lastShimMessage())
    }
}

/// Reads CShim's thread-local failure message (set by every failing cshim_tls_ call).
func lastShimMessage() -> String {
    guard let message = cshim_tls_error_message() else { return "unknown TLS error" }
    let text = String(cString: message)
    return text.isEmpty ? "unknown TLS error" : text
}
