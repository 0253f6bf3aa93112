import Auth
import Reactor
import Testing
@testable import SQL

/// SQLUserDB without a server: the parameters made from a name, and how a query's result
/// becomes found / unknown / unavailable (with the problems reported).
struct SQLUserDBTests {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test(arguments: [
        ("alice@example.org", "alice", "example.org"),
        ("a@b@example.org", "a@b", "example.org"),
        ("bob", "bob", ""),
        ("@example.org", "", "example.org"),
        ("carol@", "carol", ""),
        ("@", "", ""),
        ("", "", ""),
    ])
    func theNameIsSplitAtTheLastAt(name: String, local: String, domain: String) {
        #expect(SQLUserDB.parameters(Self.bytes(name)) == [Self.bytes(name), Self.bytes(local), Self.bytes(domain)])
    }

    /// A user database whose pool has never been started: any query would be refused as
    /// `.unavailable` at once, so `.unknown` proves no query was made.
    static func unstarted(_ loop: EventLoop) throws -> SQLUserDB {
        SQLUserDB(loop: loop, info: try ConnectInfo("host=/nonexistent-pop3d dbname=x"),
                  query: "SELECT password FROM mailbox WHERE username = $1", connections: 1, timeoutSeconds: 1)
    }

    @Test func namesNoTextColumnCanHoldAreUnknownWithoutAQuery() throws {
        let loop = try EventLoop()
        let db = try Self.unstarted(loop)
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        for name: [UInt8] in [[0x61, 0x00, 0x62], [0x00], [0x61, 0xff, 0x62], [0xc3, 0x28], [0xed, 0xa0, 0x80]] {
            var answer: SQLUserDB.Answer?
            db.lookup(UserName(bytes: name)) { answer = $0 }
            #expect(answer == .unknown, "\(name): answered at once, unknown")
        }
        // The control: a valid name does reach the (unstarted) pool.
        var answer: SQLUserDB.Answer?
        db.lookup(UserName("alice")) { answer = $0 }
        guard case .unavailable? = answer else {
            Issue.record("a valid name did not reach the pool: \(String(describing: answer))")
            return
        }
        #expect(problems.isEmpty)
    }

    static func rows(_ columns: [String], _ rows: [[String?]]) -> Result<PGRows, PGFailure> {
        .success(PGRows(columns: columns, rows: rows.map { $0.map { $0.map(bytes) } }))
    }

    @Test func oneRowIsAFoundUserWithHomeAndMail() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        let answer = db.answer(Self.rows(["password", "home", "mail"],
                                         [["{PLAIN}secret", "/srv/mail/alice", "maildir:~/Maildir"]]), user: "alice")
        #expect(answer == .found(UserEntry(user: "alice", scheme: .plain, secret: Self.bytes("secret"),
                                           home: "/srv/mail/alice", mail: "maildir:~/Maildir")))
        // Columns in any order; NULL or empty home and mail are absent; extra columns ignored.
        let other = db.answer(Self.rows(["mail", "x", "password", "home"], [[nil, "1", "{PLAIN}pw", ""]]), user: "bob")
        #expect(other == .found(UserEntry(user: "bob", scheme: .plain, secret: Self.bytes("pw"))))
        #expect(problems.isEmpty)
    }

    @Test func noRowIsUnknownAndSeveralRowsAreUnknownAndReported() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        #expect(db.answer(Self.rows(["password"], []), user: "nobody") == .unknown)
        #expect(problems.isEmpty)
        #expect(db.answer(Self.rows(["password"], [["{PLAIN}a"], ["{PLAIN}b"]]), user: "twice") == .unknown)
        #expect(problems.count == 1)
        #expect(problems.first?.contains("2 rows") == true, "\(problems)")
    }

    @Test func aNullOrUnusablePasswordIsUnknown() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        #expect(db.answer(Self.rows(["password"], [[nil]]), user: "nopw") == .unknown)
        #expect(db.answer(Self.rows(["password"], [["{ROT13}hunter2"]]), user: "rot") == .unknown)
        #expect(problems.count == 2)
        #expect(problems.first?.contains("password is NULL") == true, "\(problems)")
        #expect(problems.last?.contains("unknown password scheme") == true, "\(problems)")
        #expect(problems.allSatisfy { !$0.contains("hunter2") }, "the secret leaked: \(problems)")
    }

    /// A query without a `password` column is a configuration mistake like a query the server
    /// refuses: every login fails, and it is reported once (not once per login) until a
    /// query answers properly again.
    @Test func aResultWithoutAPasswordColumnIsUnavailableAndReportedOnce() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        let wrong = Self.rows(["pass", "home"], [["{PLAIN}x", "/h"]])
        for _ in 0..<5 {
            guard case .unavailable = db.answer(wrong, user: "alice") else {
                Issue.record("a result without a password column was not unavailable")
                return
            }
        }
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.contains("password") == true)
        // A proper answer re-arms the report.
        #expect(db.answer(Self.rows(["password"], []), user: "alice") == .unknown)
        _ = db.answer(wrong, user: "alice")
        #expect(problems.count == 2)
    }

    @Test func aDataExceptionIsAnUnknownUser() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        for state in ["22021", "22P02", "22001"] {
            #expect(db.answer(.failure(.server(sqlstate: state, message: "invalid")), user: "x") == .unknown)
        }
        #expect(problems.isEmpty)
    }

    @Test func aFailingQueryIsUnavailableAndReportedOnceUntilOneSucceeds() throws {
        let db = try Self.unstarted(try EventLoop())
        var problems: [String] = []
        db.onProblem = { problems.append($0) }
        let broken: Result<PGRows, PGFailure> = .failure(.server(sqlstate: "42P01", message: "relation \"mailbox\" does not exist"))
        for _ in 0..<5 {
            guard case .unavailable(let why) = db.answer(broken, user: "alice") else {
                Issue.record("a failing query was not unavailable")
                return
            }
            #expect(why.contains("42P01"))
        }
        #expect(problems.count == 1)
        #expect(problems.first?.contains("42P01") == true && problems.first?.contains("does not exist") == true)
        // A query that works again re-arms the report.
        #expect(db.answer(Self.rows(["password"], []), user: "alice") == .unknown)
        _ = db.answer(broken, user: "alice")
        #expect(problems.count == 2)
        // A lost connection is an outage (the pool reports those), not a query problem.
        guard case .unavailable = db.answer(.failure(.unavailable("server closed the connection")), user: "a"),
              case .unavailable = db.answer(.failure(.notReady), user: "a") else {
            Issue.record("a lost connection was not unavailable")
            return
        }
        #expect(problems.count == 2)
    }
}
