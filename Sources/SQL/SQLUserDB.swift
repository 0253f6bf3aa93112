import Auth
import Reactor

/// `passdb: sql`: users looked up in PostgreSQL with `sql_password_query` (issue 15), through
/// a `PGPool` on the loop. The query gets three parameters, sent as binary-format octets (the
/// name never becomes SQL text, so no input can change the statement):
///
/// - `$1`: the whole user name as the client sent it,
/// - `$2`: its local part (before the last `@`; the whole name when there is none),
/// - `$3`: its domain (after the last `@`; empty when there is none).
///
/// It must return at most one row with a column `password` (a secret in passwd-file syntax,
/// `{SCHEME}secret`) and may return `home` (for `%h`) and `mail` (a mail location for this
/// user). No row = unknown user; more than one row = a configuration problem, reported and
/// treated as unknown (as Dovecot does). Call on the loop.
public final class SQLUserDB {
    /// What a lookup found: the user's entry (`found`), no row, several rows or an unusable one
    /// (`unknown`: the login fails as for a wrong password), or no answer from the database
    /// (`unavailable`, with why).
    public enum Answer: Sendable, Equatable {
        /// One usable row: the user's entry.
        case found(UserEntry)
        /// No row (or a name no row can hold), several rows, or a row whose password cannot be used.
        case unknown
        /// The database could not answer (down, timed out, the query failed): the login gets
        /// `[SYS/TEMP]`, not `[AUTH]`.
        case unavailable(String)

        /// The answer is `.unavailable`: no row and no "no such user" came back.
        public var isUnavailable: Bool {
            if case .unavailable = self { return true }
            return false
        }
    }

    /// The connections the lookups run on (`sql_connections` of them).
    public let pool: PGPool
    /// `sql_password_query`; a SIGHUP may replace it (a new text's failure is reported anew).
    public var query: String {
        didSet { if query != oldValue { queryFailureReported = false } }
    }
    /// Problems worth a log line that are not outages: a failing query or one without a
    /// `password` column (reported once until a query answers properly again), a row whose
    /// password cannot be used, several rows.
    public var onProblem: ((String) -> Void)?
    private var queryFailureReported = false

    /// `timeoutSeconds` bounds each connect, query and wait for a connection
    /// (`sql_query_timeout`).
    public init(loop: EventLoop, info: ConnectInfo, query: String, connections: Int, timeoutSeconds: Double) {
        self.query = query
        pool = PGPool(loop: loop, info: info, connections: connections,
                      timeoutNanoseconds: UInt64(max(0.001, timeoutSeconds) * 1e9))
    }

    /// Opens the connections.
    public func start() { pool.start() }

    /// Closes the connections; waiting lookups fail with `.unavailable`.
    public func stop() { pool.stop() }

    /// Looks `user` up; `completion` runs once on the loop (at once for a name no row can
    /// match: one holding NUL or invalid UTF-8, which PostgreSQL's `text` cannot hold).
    /// `abandoned`: see `PGPool.query` (a lookup whose client has gone is not run).
    public func lookup(_ user: UserName, abandoned: (() -> Bool)? = nil, completion: @escaping (Answer) -> Void) {
        guard !user.bytes.contains(0), let name = String(validating: user.bytes, as: UTF8.self) else {
            return completion(.unknown)
        }
        pool.query(query, parameters: Self.parameters(user.bytes), abandoned: abandoned) { [weak self] result in
            guard let self else { return completion(.unavailable("user database closed")) }
            completion(self.answer(result, user: name))
        }
    }

    /// `$1` whole name, `$2` local part, `$3` domain (split at the last `@`).
    static func parameters(_ name: [UInt8]) -> [[UInt8]] {
        guard let at = name.lastIndex(of: UInt8(ascii: "@")) else { return [name, name, []] }
        return [name, Array(name[..<at]), Array(name[(at + 1)...])]
    }

    func answer(_ result: Result<PGRows, PGFailure>, user: String) -> Answer {
        switch result {
        case .failure(.unavailable(let why)):
            return .unavailable(why)
        case .failure(.notReady):
            return .unavailable("no connection ready")
        case .failure(.server(let sqlstate, let message)):
            // Class 22 (data exception): the server refused the parameter itself (an
            // encoding it cannot hold, a value too long for a varchar column): no such user.
            if sqlstate.hasPrefix("22") { return .unknown }
            if !queryFailureReported {
                queryFailureReported = true
                onProblem?("sql_password_query failed (SQLSTATE \(sqlstate)): \(message)")
            }
            return .unavailable("query failed (SQLSTATE \(sqlstate))")
        case .success(let rows):
            guard let passwordColumn = rows.column("password") else {
                // A configuration mistake like a failing query: once, not once per login.
                if !queryFailureReported {
                    queryFailureReported = true
                    onProblem?("sql_password_query returned no column named password")
                }
                return .unavailable("query has no password column")
            }
            queryFailureReported = false
            guard let row = rows.rows.first else { return .unknown }
            guard rows.rows.count == 1 else {
                onProblem?("sql_password_query returned \(rows.rows.count) rows for one user: treated as unknown")
                return .unknown
            }
            func text(_ column: String) -> String? {
                guard let c = rows.column(column), c < row.count, let value = row[c], !value.isEmpty else { return nil }
                return String(decoding: value, as: UTF8.self)
            }
            guard passwordColumn < row.count, let password = row[passwordColumn] else {
                onProblem?("sql: user \"\(user)\": password is NULL: cannot log in")
                return .unknown
            }
            switch UserEntry.fromDatabase(user: user, password: password, home: text("home"), mail: text("mail")) {
            case .success(let entry): return .found(entry)
            case .failure(let problem):
                onProblem?("sql: \(problem.message)")
                return .unknown
            }
        }
    }
}
