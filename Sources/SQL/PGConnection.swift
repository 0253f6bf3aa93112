import CLibPQ
import Glibc
import Reactor

/// The rows of one query result, copied out of libpq's PGresult: `columns` are the result's
/// column names, `rows[i][j]` the value of column j in row i as text-format octets (nil for
/// SQL NULL).
public struct PGRows: Sendable, Equatable {
    /// The result's column names (PQfname), in result order.
    public var columns: [String]
    /// `rows[i][j]`: column j of row i as text-format octets (PQgetvalue), nil for SQL NULL.
    public var rows: [[[UInt8]?]]

    /// The index of the column named `name`, nil when absent.
    public func column(_ name: String) -> Int? { columns.firstIndex(of: name) }
}

/// Why a query gave no rows.
public enum PGFailure: Error, Sendable, Equatable {
    /// The connection broke, could not be opened, or the query passed `queryTimeout`
    /// (then the connection was closed: libpq's PQcancel blocks). A later try may work.
    case unavailable(String)
    /// The server answered with an error (`sqlstate`, PostgreSQL manual appendix A; its
    /// message). The connection stays usable.
    case server(sqlstate: String, message: String)
    /// The connection is connecting or already running a query.
    case notReady
}

/// One libpq connection driven on the reactor through libpq's asynchronous API (PostgreSQL
/// manual, libpq "Database Connection Control Functions" and "Asynchronous Command
/// Processing"): PQconnectStart + PQconnectPoll to connect, PQsendQueryParams + PQflush to
/// send, PQconsumeInput / PQisBusy / PQgetResult to read; the socket from PQsocket watched
/// with a `DescriptorWatch`. Nothing here blocks, provided the connection string needs no DNS
/// lookup (`ConnectInfo` refuses those).
///
/// One query at a time. Connecting and each query are bounded by `timeoutNanoseconds`; on
/// expiry, and on any connection error, the connection is closed (`state` = `.closed`) and
/// `onClosed` runs: reconnecting (with backoff) is the owner's decision. Call on the loop.
public final class PGConnection {
    /// `closed`: no connection; `connecting`: PQconnectPoll under way; `ready`: idle, a query may
    /// be sent; `busy`: a query is running.
    public enum State: Equatable, Sendable { case closed, connecting, ready, busy }

    /// Where the connection is; `query` is accepted only in `.ready`.
    public private(set) var state: State = .closed
    /// Runs when the connection is ready after `connect()`.
    public var onReady: (() -> Void)?
    /// Runs for each notice or warning the server sends (PostgreSQL's NOTICE/WARNING messages;
    /// libpq would print them on stderr).
    public var onNotice: ((String) -> Void)?
    /// Runs when the connection closes by itself (failure, timeout, server gone), with why.
    public var onClosed: ((String) -> Void)?

    private let loop: EventLoop
    private let info: ConnectInfo
    private let label: String
    private let timeoutNanoseconds: UInt64
    private var conn: OpaquePointer?
    private var watch: DescriptorWatch?
    private var timer: TimerID?
    private var completion: ((Result<PGRows, PGFailure>) -> Void)?
    private var result: Result<PGRows, PGFailure>?
    /// PQflush answered 1: part of the query is still in libpq's output buffer.
    private var flushing = false

    /// `label` names the connection in loop-lag warnings and messages.
    public init(loop: EventLoop, info: ConnectInfo, label: String, timeoutNanoseconds: UInt64) {
        self.loop = loop
        self.info = info
        self.label = label
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    deinit {
        watch?.cancel()
        if let conn { PQfinish(conn) }
        if let timer { loop.cancelTimer(timer) }
    }

    // MARK: connecting

    /// Starts connecting (state `.connecting`); `onReady` or `onClosed` follows. No effect
    /// unless closed.
    public func connect() {
        guard state == .closed else { return }
        // gssencmode=disable first, the admin's string after it (expand_dbname: later
        // keywords win): libpq's default `prefer` looks up Kerberos credentials inside
        // PQconnectPoll, which can block; an admin who wants GSSAPI says so in sql_connect.
        let keywords = ["gssencmode", "dbname"], values = ["disable", info.text]
        let started: OpaquePointer? = withCStrings(keywords) { k in
            withCStrings(values) { v in PQconnectStartParams(k, v, 1) }
        }
        guard let started else {
            return fail("out of memory starting a connection")
        }
        conn = started
        // Server notices go to `onNotice`, not to libpq's default, which prints on stderr.
        PQsetNoticeProcessor(started, { arg, message in
            guard let arg, let message else { return }
            let connection = Unmanaged<PGConnection>.fromOpaque(arg).takeUnretainedValue()
            connection.onNotice?(String(cString: message).trimmed())
        }, Unmanaged.passUnretained(self).toOpaque())
        state = .connecting
        armTimer()
        guard PQstatus(started) != CONNECTION_BAD else { return fail(errorMessage()) }
        // The manual: after PQconnectStart, behave as if PQconnectPoll had answered
        // PGRES_POLLING_WRITING.
        watchSocket(read: false, write: true)
    }

    private func connectStep() {
        guard let conn else { return }
        let polled = PQconnectPoll(conn)
        if polled == PGRES_POLLING_READING {
            watchSocket(read: true, write: false)
        } else if polled == PGRES_POLLING_WRITING {
            watchSocket(read: false, write: true)
        } else if polled == PGRES_POLLING_OK {
            guard PQsetnonblocking(conn, 1) == 0 else { return fail(errorMessage()) }
            disarmTimer()
            state = .ready
            // Idle connections watch for reading: a server that goes away (restart,
            // pg_terminate_backend) is noticed at once, not at the next login.
            watchSocket(read: true, write: false)
            onReady?()
        } else {
            fail(errorMessage())
        }
    }

    /// Watches PQsocket: it can change during PQconnectPoll (several hosts, an SSL/GSS
    /// attempt that falls back and retries on a new socket), so it is read after every step.
    private func watchSocket(read: Bool, write: Bool) {
        guard let conn else { return }
        let fd = PQsocket(conn)
        guard fd >= 0 else { return fail("no socket: \(errorMessage())") }
        do {
            if let watch, watch.descriptor == fd, !watch.isCancelled {
                try watch.want(read: read, write: write)
            } else {
                watch?.cancel()
                watch = try DescriptorWatch(loop: loop, fd: fd, read: read, write: write, label: "pgsql \(label)") {
                    [weak self] readable, writable in self?.handle(readable: readable, writable: writable)
                }
            }
        } catch {
            fail("watching the socket: \(error)")
        }
    }

    private func handle(readable: Bool, writable: Bool) {
        switch state {
        case .connecting: connectStep()
        case .ready: if readable { idleInput() }
        case .busy: queryStep(readable: readable, writable: writable)
        case .closed: break
        }
    }

    private func idleInput() {
        guard let conn else { return }
        if PQconsumeInput(conn) == 0 || PQstatus(conn) == CONNECTION_BAD { return fail(errorMessage()) }
    }

    // MARK: querying

    /// Sends `sql` with `parameters` (`$1`...), each sent in binary format as the octets
    /// given as type `text` (`textOID`), so no byte is interpreted or needs escaping. `completion` runs once on the loop.
    /// Returns false (and does not call `completion`) unless the state is `.ready`.
    @discardableResult
    public func query(_ sql: String, parameters: [[UInt8]],
                      completion: @escaping (Result<PGRows, PGFailure>) -> Void) -> Bool {
        guard state == .ready, let conn else { return false }
        let count = parameters.count
        let values = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(count, 1))
        let lengths = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        let formats = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        let types = UnsafeMutablePointer<Oid>.allocate(capacity: max(count, 1))
        var storage: [UnsafeMutablePointer<CChar>] = []
        defer {
            for pointer in storage { pointer.deallocate() }
            values.deallocate(); lengths.deallocate(); formats.deallocate(); types.deallocate()
        }
        for (i, parameter) in parameters.enumerated() {
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(parameter.count, 1))
            parameter.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: bytes.count) }
            }
            storage.append(copy)
            values[i] = UnsafePointer(copy)
            lengths[i] = Int32(clamping: parameter.count)
            formats[i] = 1
            types[i] = Self.textOID
        }
        // libpq copies the parameters into its output buffer during the call.
        guard PQsendQueryParams(conn, sql, Int32(clamping: count), types, values, lengths, formats, 0) == 1 else {
            completion(.failure(.unavailable(errorMessage())))
            fail(errorMessage())
            return true
        }
        state = .busy
        flushing = false
        self.completion = completion
        result = nil
        armTimer()
        flush()
        return true
    }

    /// PQflush: 0 = all sent, wait for the answer; 1 = more to send, wait for writable *and*
    /// readable (the manual: consume input meanwhile, the server may be blocked writing).
    private func flush() {
        guard let conn else { return }
        switch PQflush(conn) {
        case 0:
            flushing = false
            watchSocket(read: true, write: false)
        case 1:
            flushing = true
            watchSocket(read: true, write: true)
        default: fail(errorMessage())
        }
    }

    private func queryStep(readable: Bool, writable: Bool) {
        guard let conn else { return }
        if readable {
            guard PQconsumeInput(conn) == 1 else { return fail(errorMessage()) }
        }
        if flushing {
            flush()
            guard state == .busy else { return }
        }
        // PQgetResult until NULL: the connection takes no new query before that.
        while PQisBusy(conn) == 0 {
            guard let res = PQgetResult(conn) else { return finishQuery() }
            if result == nil { result = Self.copy(res) }
            PQclear(res)
            if PQstatus(conn) == CONNECTION_BAD { return fail(errorMessage()) }
        }
    }

    private func finishQuery() {
        disarmTimer()
        state = .ready
        watchSocket(read: true, write: false)
        let done = completion
        completion = nil
        let outcome = result ?? .failure(.unavailable("no result"))
        result = nil
        done?(outcome)
    }

    /// The OID of `text` (PostgreSQL's pg_type.dat). Every parameter is declared `text`, so
    /// the statement has all of them even when it uses only some (`$3` alone): the server
    /// refuses a bind that supplies more parameters than the statement declares.
    static let textOID: Oid = 25

    /// The `.unavailable` reason of a query that passed the timeout (the pool does not run
    /// such a query again: the database is slow, not gone).
    public static let queryTimedOut = "query timed out"

    static func copy(_ res: OpaquePointer) -> Result<PGRows, PGFailure> {
        let status = PQresultStatus(res)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let sqlstate = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
            let message = PQresultErrorMessage(res).map { String(cString: $0) } ?? ""
            return .failure(.server(sqlstate: sqlstate, message: message.trimmed()))
        }
        let columnCount = Int(PQnfields(res))
        let rowCount = Int(PQntuples(res))
        var rows = PGRows(columns: (0..<columnCount).map { PQfname(res, Int32($0)).map { String(cString: $0) } ?? "" },
                          rows: [])
        rows.rows.reserveCapacity(rowCount)
        for r in 0..<rowCount {
            var row: [[UInt8]?] = []
            row.reserveCapacity(columnCount)
            for c in 0..<columnCount {
                if PQgetisnull(res, Int32(r), Int32(c)) == 1 { row.append(nil); continue }
                let length = Int(PQgetlength(res, Int32(r), Int32(c)))
                guard let value = PQgetvalue(res, Int32(r), Int32(c)) else { row.append([]); continue }
                row.append(UnsafeRawBufferPointer(start: value, count: length).map { $0 })
            }
            rows.rows.append(row)
        }
        return .success(rows)
    }

    // MARK: closing

    /// Closes the connection without calling `onClosed`; a running query completes with
    /// `.unavailable`.
    public func close() {
        teardown()
        completeAbandoned("connection closed")
    }

    private func fail(_ reason: String) {
        teardown()
        completeAbandoned(reason)
        onClosed?(reason)
    }

    private func teardown() {
        disarmTimer()
        // Before PQfinish closes the socket: the loop's table is indexed by descriptor.
        watch?.cancel()
        watch = nil
        if let conn { PQfinish(conn) }
        conn = nil
        state = .closed
    }

    private func completeAbandoned(_ reason: String) {
        let done = completion
        completion = nil
        result = nil
        done?(.failure(.unavailable(reason)))
    }

    private func armTimer() {
        disarmTimer()
        timer = loop.scheduleTimer(after: timeoutNanoseconds) { [weak self] in
            guard let self else { return }
            self.timer = nil
            // Never PQcancel: it connects to the server and waits, blocking the loop.
            self.fail(self.state == .connecting ? "connect timed out" : Self.queryTimedOut)
        }
    }

    private func disarmTimer() {
        if let timer { loop.cancelTimer(timer) }
        timer = nil
    }

    private func errorMessage() -> String {
        guard let conn, let message = PQerrorMessage(conn) else { return "unknown error" }
        let text = String(cString: message).trimmed()
        return text.isEmpty ? "unknown error" : text
    }
}

extension String {
    fileprivate func trimmed() -> String {
        var result = Substring(self)
        while let last = result.last, last == "\n" || last == " " { result.removeLast() }
        return String(result)
    }
}

/// Runs `body` with a NULL-terminated array of C strings that live for the call.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for c in copies { free(c) } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
