import CLibPQ
import Glibc

/// A checked `sql_connect` value: a libpq connection string (keyword/value form or a
/// `postgresql://` URI, PostgreSQL manual, libpq "Connection Strings") that names no host
/// needing a DNS lookup.
///
/// libpq resolves host names with a blocking getaddrinfo inside PQconnectStart/PQconnectPoll,
/// which would stall the event loop, so a name is refused at start: every `host` element must
/// be a Unix socket directory (`/...`), an abstract socket (`@...`) or a numeric IPv4/IPv6
/// address, unless `hostaddr` gives a numeric address for each host element (libpq then uses
/// `host` only for authentication and TLS checks). `service` is refused (its host would come
/// from pg_service.conf, unchecked); with no `host`/`hostaddr` at all the `PGHOST`,
/// `PGHOSTADDR` and `PGSERVICE` environment variables libpq falls back to are checked the
/// same way (absent: libpq's compiled-in socket directory).
public struct ConnectInfo: Sendable, Equatable {
    /// The connection string as given.
    public let text: String

    /// Why a connection string was refused; `description` is the start-up error.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        /// libpq's parser refused it (its message).
        case syntax(String)
        /// This host element would need a DNS lookup.
        case hostName(String)
        /// `hostaddr` has an element that is not a numeric address.
        case hostaddrNotNumeric(String)
        /// `hostaddr` and `host` both given with different element counts.
        case hostCountMismatch
        /// `service` names an entry of pg_service.conf, whose host is not checked.
        case service

        /// The start-up error line, prefixed `sql_connect:`.
        public var description: String {
            switch self {
            case .syntax(let message): return "sql_connect: \(message)"
            case .hostName(let host):
                return "sql_connect: host \"\(host)\" needs a DNS lookup, which libpq does blocking; use a Unix socket directory or hostaddr="
            case .hostaddrNotNumeric(let value): return "sql_connect: hostaddr \"\(value)\" is not a numeric address"
            case .hostCountMismatch: return "sql_connect: host and hostaddr have different numbers of elements"
            case .service: return "sql_connect: service= is not supported (its host would be looked up unchecked); give host= or hostaddr="
            }
        }
    }

    /// Parses `text` with libpq's own parser (PQconninfoParse) and checks its hosts.
    /// - Throws: `Problem`.
    /// - Parameter environment: the variable lookup (the process environment by default;
    ///   tests pass their own).
    public init(_ text: String, environment: (String) -> String? = ConnectInfo.processEnvironment) throws(Problem) {
        var options: [String: String] = [:]
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let parsed = PQconninfoParse(text, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "out of memory"
            if let errorMessage { PQfreemem(errorMessage) }
            throw .syntax(message.trimmingTrailingNewlines())
        }
        defer { PQconninfoFree(parsed) }
        var option = parsed
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { options[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        if let service = options["service"], !service.isEmpty { throw .service }
        var host = options["host"].flatMap { $0.isEmpty ? nil : $0 }
        var hostaddr = options["hostaddr"].flatMap { $0.isEmpty ? nil : $0 }
        if host == nil && hostaddr == nil {
            if let service = environment("PGSERVICE"), !service.isEmpty { throw .service }
            host = environment("PGHOST").flatMap { $0.isEmpty ? nil : $0 }
            hostaddr = environment("PGHOSTADDR").flatMap { $0.isEmpty ? nil : $0 }
        }
        try Self.check(host: host, hostaddr: hostaddr)
        self.text = text
    }

    static func check(host: String?, hostaddr: String?) throws(Problem) {
        if let hostaddr {
            let addresses = hostaddr.split(separator: ",", omittingEmptySubsequences: false)
            for address in addresses where !isNumericAddress(address) {
                throw .hostaddrNotNumeric(String(address))
            }
            if let host, host.split(separator: ",", omittingEmptySubsequences: false).count != addresses.count {
                throw .hostCountMismatch
            }
            return
        }
        guard let host else { return }
        for element in host.split(separator: ",", omittingEmptySubsequences: false) {
            // An empty element means libpq's default (the compiled-in socket directory).
            if element.isEmpty || element.hasPrefix("/") || element.hasPrefix("@") || isNumericAddress(element) { continue }
            throw .hostName(String(element))
        }
    }

    /// Whether `text` is a numeric IPv4 or IPv6 address (inet_pton, as libpq's own check).
    static func isNumericAddress(_ text: Substring) -> Bool {
        var storage = in6_addr()
        let string = String(text)
        return inet_pton(AF_INET, string, &storage) == 1 || inet_pton(AF_INET6, string, &storage) == 1
    }

    /// getenv, copied.
    public static func processEnvironment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

extension String {
    fileprivate func trimmingTrailingNewlines() -> String {
        var result = self
        while result.last == "\n" { result.removeLast() }
        return result
    }
}
