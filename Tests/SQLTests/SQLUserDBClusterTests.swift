import Auth
import Reactor
import Testing
@testable import SQL

/// SQLUserDB against a throwaway PostgreSQL with a PostfixAdmin-style `mailbox` table:
/// the three parameters, rows to users, the server's own refusals.
struct SQLUserDBClusterTests {
    static let setup = """
        CREATE TABLE mailbox (username varchar(255) PRIMARY KEY, password varchar(255) NOT NULL,
                              maildir varchar(255), local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL,
                              mail text, active boolean NOT NULL DEFAULT true);
        INSERT INTO mailbox VALUES ('alice@example.org', '{PLAIN}secret', 'example.org/alice/', 'alice', 'example.org', NULL, true);
        INSERT INTO mailbox VALUES ('bob@example.org', '{PLAIN}other', 'example.org/bob/', 'bob', 'example.org', 'maildir:/srv/bob', true);
        INSERT INTO mailbox VALUES ('carol@example.org', '{PLAIN}gone', 'example.org/carol/', 'carol', 'example.org', NULL, false);
        INSERT INTO mailbox VALUES ('a@b@example.net', '{PLAIN}odd', 'example.net/ab/', 'a@b', 'example.net', NULL, true);
        """
    static let postfixAdmin = "SELECT password, '/srv/mail/' || maildir AS home, mail FROM mailbox WHERE username = $1 AND active"

    /// One lookup, the loop run until it is answered.
    static func ask(_ db: SQLUserDB, _ runner: PGConnectionTests.Runner, _ name: [UInt8]) throws -> SQLUserDB.Answer? {
        var answer: SQLUserDB.Answer?
        db.lookup(UserName(bytes: name)) { answer = $0 }
        _ = try runner.run(seconds: 20) { answer != nil }
        return answer
    }

    static func ask(_ db: SQLUserDB, _ runner: PGConnectionTests.Runner, _ name: String) throws -> SQLUserDB.Answer? {
        try ask(db, runner, Array(name.utf8))
    }

    /// A cluster with `setup`'s table, a loop, and a started SQLUserDB running `query`;
    /// `problems` collects what it reports. `stop()` closes the connections and the cluster.
    final class Fixture {
        let cluster: Cluster
        let runner: PGConnectionTests.Runner
        let db: SQLUserDB
        var problems: [String] = []

        init(query: String, connections: Int) throws {
            cluster = try Cluster()
            do {
                try cluster.psql(SQLUserDBClusterTests.setup)
                let loop = try EventLoop()
                runner = PGConnectionTests.Runner(loop)
                db = SQLUserDB(loop: loop, info: try ConnectInfo(cluster.conninfo), query: query,
                               connections: connections, timeoutSeconds: 5)
            } catch {
                cluster.stop()
                throw error
            }
            db.onProblem = { [unowned self] in self.problems.append($0) }
            db.start()
        }

        func stop() {
            db.stop()
            cluster.stop()
        }

        func ask(_ name: String) throws -> SQLUserDB.Answer? { try SQLUserDBClusterTests.ask(db, runner, name) }
        func ask(_ name: [UInt8]) throws -> SQLUserDB.Answer? { try SQLUserDBClusterTests.ask(db, runner, name) }
    }

    @Test func usersComeFromTheTableAndNoInputChangesTheStatement() throws {
        let fixture = try Fixture(query: Self.postfixAdmin, connections: 2)
        defer { fixture.stop() }
        let (cluster, runner, db) = (fixture.cluster, fixture.runner, fixture.db)
        #expect(try runner.run(seconds: 20) { db.pool.readyCount == 2 })

        #expect(try Self.ask(db, runner, "alice@example.org") == .found(UserEntry(
            user: "alice@example.org", scheme: .plain, secret: Array("secret".utf8), home: "/srv/mail/example.org/alice/")))
        #expect(try Self.ask(db, runner, "bob@example.org") == .found(UserEntry(
            user: "bob@example.org", scheme: .plain, secret: Array("other".utf8), home: "/srv/mail/example.org/bob/",
            mail: "maildir:/srv/bob")))
        #expect(try Self.ask(db, runner, "carol@example.org") == .unknown, "inactive")
        #expect(try Self.ask(db, runner, "Alice@example.org") == .unknown, "compared as the database compares")
        for hostile in ["x' OR '1'='1", "a;DROP TABLE mailbox", "alice@example.org' --", "' UNION SELECT '{PLAIN}x', '', ''--",
                        String(repeating: "a", count: 300), "\\", "$1", "alice@example.org\n"] {
            #expect(try Self.ask(db, runner, hostile) == .unknown, "\(hostile)")
        }
        // NUL and invalid UTF-8 never reach the server.
        #expect(try Self.ask(db, runner, [0x61, 0x00, 0x40, 0x62]) == .unknown)
        #expect(try Self.ask(db, runner, [0x61, 0xff, 0x40, 0x62]) == .unknown)
        #expect(try cluster.psqlOutput("SELECT count(*) FROM mailbox") == "4", "the table is intact")
        #expect(fixture.problems.isEmpty, "\(fixture.problems)")
    }

    @Test func localPartAndDomainAreTheirOwnParameters() throws {
        let fixture = try Fixture(query: "SELECT password FROM mailbox WHERE local_part = $2 AND domain = $3", connections: 1)
        defer { fixture.stop() }
        let (runner, db) = (fixture.runner, fixture.db)
        guard case .found(let alice)? = try Self.ask(db, runner, "alice@example.org") else {
            Issue.record("alice by $2/$3 not found; problems: \(fixture.problems)")
            return
        }
        #expect(alice.user == "alice@example.org" && alice.secret == Array("secret".utf8))
        // Split at the last @.
        guard case .found(let ab)? = try Self.ask(db, runner, "a@b@example.net") else {
            Issue.record("a@b@example.net not found; problems: \(fixture.problems)")
            return
        }
        #expect(ab.secret == Array("odd".utf8))
        #expect(try Self.ask(db, runner, "alice") == .unknown, "no @: domain empty")

        // A query may use one parameter only ($3): the others are still declared.
        db.query = "SELECT password FROM mailbox WHERE domain = $3 AND local_part = 'bob'"
        guard case .found(let bob)? = try Self.ask(db, runner, "anyone@example.org") else {
            Issue.record("a query with $3 alone failed; problems: \(fixture.problems)")
            return
        }
        #expect(bob.secret == Array("other".utf8))
        #expect(fixture.problems.isEmpty, "\(fixture.problems)")
    }

    @Test func serverErrorsAndSurprisingResults() throws {
        let fixture = try Fixture(query: "SELECT password FROM mailbox WHERE length(username) = $1::int", connections: 1)
        defer { fixture.stop() }
        let (runner, db) = (fixture.runner, fixture.db)
        // The server refuses the value itself (22P02, invalid input syntax for integer): unknown.
        #expect(try Self.ask(db, runner, "alice@example.org") == .unknown)
        #expect(fixture.problems.isEmpty, "\(fixture.problems)")

        // A statement the server cannot run: unavailable, reported once, the connection kept.
        db.query = "SELECT password FROM no_such_table WHERE username = $1"
        for _ in 0..<3 {
            guard case .unavailable(let why)? = try Self.ask(db, runner, "alice@example.org") else {
                Issue.record("a failing query was not unavailable")
                return
            }
            #expect(why.contains("42P01"), "\(why)")
        }
        #expect(fixture.problems.count == 1, "\(fixture.problems)")
        #expect(fixture.problems.first?.contains("no_such_table") == true, "\(fixture.problems)")
        #expect(db.pool.readyCount == 1, "a query error does not close the connection")

        // Several rows for one name: unknown, reported.
        db.query = "SELECT password FROM mailbox WHERE domain = $3"
        #expect(try Self.ask(db, runner, "x@example.org") == .unknown)
        #expect(fixture.problems.count == 2 && fixture.problems.last?.contains("3 rows") == true, "\(fixture.problems)")

        // No password column: unavailable, reported.
        db.query = "SELECT password AS secret FROM mailbox WHERE username = $1"
        guard case .unavailable? = try Self.ask(db, runner, "alice@example.org") else {
            Issue.record("a result without a password column was not unavailable")
            return
        }
        #expect(fixture.problems.count == 3 && fixture.problems.last?.contains("password") == true, "\(fixture.problems)")
    }
}
