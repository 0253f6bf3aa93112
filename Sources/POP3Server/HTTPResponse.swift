import Glibc

/// The statuses the metrics endpoint answers with (RFC 9110 §15).
enum HTTPStatus: Int, Sendable {
    case ok = 200
    case badRequest = 400
    case notFound = 404
    case methodNotAllowed = 405
    case requestTimeout = 408
    case contentTooLarge = 413
    /// RFC 6585 §5.
    case headerFieldsTooLarge = 431
    case versionNotSupported = 505

    /// The reason phrase (RFC 9110's names).
    var text: String {
        switch self {
        case .ok: "OK"
        case .badRequest: "Bad Request"
        case .notFound: "Not Found"
        case .methodNotAllowed: "Method Not Allowed"
        case .requestTimeout: "Request Timeout"
        case .contentTooLarge: "Content Too Large"
        case .headerFieldsTooLarge: "Request Header Fields Too Large"
        case .versionNotSupported: "HTTP Version Not Supported"
        }
    }
}

/// Which status a well-formed request gets: the endpoint serves one resource.
enum MetricsRoute {
    /// 404 for any other path (whatever the method), 405 for a method other than GET and
    /// HEAD on `/metrics` (with `Allow`, RFC 9110 §15.5.6), else 200.
    static func status(for request: HTTPRequestHead) -> HTTPStatus {
        guard request.target == .metrics else { return .notFound }
        guard request.method != .other else { return .methodNotAllowed }
        return .ok
    }
}

/// The head of a response: status line and the fields the endpoint sends.
struct HTTPResponseHead {
    enum ConnectionHeader {
        /// HTTP/1.1 keep-alive, the default: no field.
        case none
        /// The connection closes after this response (RFC 9112 §9.6).
        case close
        /// An HTTP/1.0 client that asked for keep-alive is told it got it.
        case keepAlive
    }

    static let textType = "text/plain; charset=utf-8"
    /// RFC 9110 §10.2.1.
    static let allowed = "GET, HEAD"

    let status: HTTPStatus
    let contentType: String
    let contentLength: Int
    let connection: ConnectionHeader
    /// Adds `Allow: GET, HEAD` (405).
    let allow: Bool

    /// Appends the head, CRLF-terminated, to `out`. `date` is an IMF-fixdate: an origin
    /// server with a clock sends `Date` (RFC 9110 §6.6.1).
    func write(into out: inout [UInt8], date: String) {
        out.append(contentsOf: "HTTP/1.1 \(status.rawValue) \(status.text)\r\n".utf8)
        out.append(contentsOf: "Date: \(date)\r\n".utf8)
        out.append(contentsOf: "Content-Type: \(contentType)\r\n".utf8)
        out.append(contentsOf: "Content-Length: \(contentLength)\r\n".utf8)
        if allow { out.append(contentsOf: "Allow: \(Self.allowed)\r\n".utf8) }
        switch connection {
        case .none: break
        case .close: out.append(contentsOf: "Connection: close\r\n".utf8)
        case .keepAlive: out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(contentsOf: "\r\n".utf8)
    }
}

/// The `Date` field's text, formatted once per second.
struct HTTPDate {
    private var second: time_t = -1
    private var cached = ""

    /// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    mutating func text(now: time_t) -> String {
        if now != second {
            second = now
            cached = Self.format(now)
        }
        return cached
    }

    static func format(_ t: time_t) -> String {
        var seconds = t
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "Thu, 01 Jan 1970 00:00:00 GMT" }
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let day = days[Int(max(0, min(6, parts.tm_wday)))]
        let month = months[Int(max(0, min(11, parts.tm_mon)))]
        return "\(day), \(two(parts.tm_mday)) \(month) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
