import Glibc
import Logging
import Reactor
import Testing
@testable import POP3Server

/// The issue-15 keys: `passdb`, `sql_*`, `auth_cache_*` from flags, environment and file;
/// their ranges; the start-up errors of `passdb: sql`.
@Suite struct ServerConfigSQLTests {
    static let connect = "host=/run/postgresql dbname=mail user=pop3d"
    static let query = "SELECT password, '/srv/mail/' || maildir AS home FROM mailbox WHERE username = $1 AND active"
    /// The keys `passdb: sql` needs, as flags.
    static let sqlFlags: [String: [String]] = ["passdb": ["sql"], "sql_connect": [connect], "sql_password_query": [query]]

    @Test func defaultsAreTheIssuesTable() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(c.passdb == .passwdFile)
        #expect(c.sqlConnect == nil && c.sqlPasswordQuery == nil)
        #expect(c.sqlConnections == 2)
        #expect(c.sqlQueryTimeoutSeconds == 5)
        #expect(c.authCacheSize == 100_000)
        #expect(c.authCacheTTLSeconds == 3_600)
        #expect(c.authCacheNegativeTTLSeconds == 600)
    }

    @Test func everyKeyFromTheFile() async throws {
        let yaml = """
        passdb: sql
        sql_connect: "host=/run/postgresql dbname=mail user=pop3d"
        sql_password_query: "SELECT password, '/srv/mail/' || maildir AS home FROM mailbox WHERE username = $1 AND active"
        sql_connections: 4
        sql_query_timeout: 10
        auth_cache_size: 5000
        auth_cache_ttl: 60
        auth_cache_negative_ttl: 0

        """
        try await withConfigFile(yaml) { path in
            let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: path)
            #expect(c.passdb == .sql)
            #expect(c.sqlConnect == Self.connect)
            #expect(c.sqlPasswordQuery == Self.query)
            #expect(c.sqlConnections == 4)
            #expect(c.sqlQueryTimeoutSeconds == 10)
            #expect(c.authCacheSize == 5000)
            #expect(c.authCacheTTLSeconds == 60)
            #expect(c.authCacheNegativeTTLSeconds == 0)
            #expect(c.passwdFile == nil, "no passwd_file needed with passdb: sql")
        }
    }

    @Test func flagsWinOverEnvironmentOverFile() async throws {
        try await withConfigFile("passdb: passwd-file\nauth_cache_size: 7\nsql_connections: 3\n") { path in
            var flags = Self.sqlFlags
            flags["auth_cache_size"] = ["0"]
            let c = try await ServerConfig.load(
                flags: flags,
                environment: ["POP3D_AUTH_CACHE_SIZE": "9", "POP3D_SQL_CONNECTIONS": "5", "POP3D_AUTH_CACHE_TTL": "120"],
                configFile: path)
            #expect(c.passdb == .sql)
            #expect(c.authCacheSize == 0, "flag over environment over file")
            #expect(c.sqlConnections == 5, "environment over file")
            #expect(c.authCacheTTLSeconds == 120)
        }
    }

    @Test(arguments: ["sql", "SQL", " sql ", "Sql"])
    func passdbIsCaseAndBlankTolerant(value: String) async throws {
        var flags = Self.sqlFlags
        flags["passdb"] = [value]
        let c = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
        #expect(c.passdb == .sql)
    }

    @Test(arguments: [
        ("passdb", "mysql", "passdb"),
        ("passdb", "passwd", "passdb"),
        ("sql_connections", "0", "sql_connections"),
        ("sql_connections", "65", "sql_connections"),
        ("sql_connections", "two", "sql_connections"),
        ("sql_query_timeout", "0", "sql_query_timeout"),
        ("sql_query_timeout", "301", "sql_query_timeout"),
        ("sql_query_timeout", "1.5", "sql_query_timeout"),
        ("auth_cache_size", "-1", "auth_cache_size"),
        ("auth_cache_size", "10000001", "auth_cache_size"),
        ("auth_cache_ttl", "0", "auth_cache_ttl"),
        ("auth_cache_ttl", "31536001", "auth_cache_ttl"),
        ("auth_cache_negative_ttl", "-1", "auth_cache_negative_ttl"),
        ("auth_cache_negative_ttl", "1h", "auth_cache_negative_ttl"),
    ])
    func badValuesNameTheirKey(key: String, value: String, named: String) async throws {
        var flags = Self.sqlFlags
        flags[key] = [value]
        do {
            _ = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
            Issue.record("accepted \(key)=\(value)")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix(named), "\(e)")
        }
    }

    @Test(arguments: [
        ("sql_connections", "1"), ("sql_connections", "64"), ("sql_query_timeout", "1"), ("sql_query_timeout", "300"),
        ("auth_cache_size", "0"), ("auth_cache_size", "10000000"), ("auth_cache_ttl", "1"),
        ("auth_cache_ttl", "31536000"), ("auth_cache_negative_ttl", "0"),
    ])
    func boundaryValuesAreAccepted(key: String, value: String) async throws {
        var flags = Self.sqlFlags
        flags[key] = [value]
        let c = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
        let read: Int = switch key {
        case "sql_connections": c.sqlConnections
        case "sql_query_timeout": c.sqlQueryTimeoutSeconds
        case "auth_cache_size": c.authCacheSize
        case "auth_cache_ttl": c.authCacheTTLSeconds
        default: c.authCacheNegativeTTLSeconds
        }
        #expect(read == Int(value))
    }

    @Test(arguments: [
        (["passdb": ["sql"], "sql_password_query": [query]], "sql_connect"),
        (["passdb": ["sql"], "sql_connect": [""], "sql_password_query": [query]], "sql_connect"),
        (["passdb": ["sql"], "sql_connect": [connect]], "sql_password_query"),
        (["passdb": ["sql"], "sql_connect": [connect], "sql_password_query": [""]], "sql_password_query"),
    ])
    func passdbSQLNeedsAConnectionAndAQuery(flags: [String: [String]], missing: String) async throws {
        do {
            _ = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
            Issue.record("started without \(missing)")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix(missing), "\(e)")
            #expect(e.description.contains("required"), "\(e)")
        }
    }

    @Test func theSQLKeysAreNotCheckedWithThePasswdFile() async throws {
        let c = try await ServerConfig.load(flags: ["sql_connect": ["host=db.example.org"]], environment: [:], configFile: nil)
        #expect(c.passdb == .passwdFile)
    }

    @Test(arguments: [
        "host=db.example.org dbname=mail",
        "host=/run/postgresql,db.example.org dbname=mail",
        "postgresql://db.example.org/mail",
        "hostaddr=db.example.org",
        "service=mail",
    ])
    func aHostNeedingDNSIsRefusedAtStart(connect: String) async throws {
        var flags = Self.sqlFlags
        flags["sql_connect"] = [connect]
        do {
            _ = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
            Issue.record("accepted sql_connect \(connect)")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix("sql_connect"), "\(e)")
        }
    }

    @Test(arguments: [
        "host=/run/postgresql dbname=mail user=pop3d",
        "host=127.0.0.1 port=5433 dbname=mail",
        "host=::1 dbname=mail",
        "host=db.example.org hostaddr=192.0.2.7 dbname=mail",
        "postgresql://127.0.0.1:5432/mail",
    ])
    func socketsAndNumericAddressesAreAccepted(connect: String) async throws {
        var flags = Self.sqlFlags
        flags["sql_connect"] = [connect]
        let c = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
        #expect(c.sqlConnect == connect)
    }

    @Test func aSyntaxErrorInSQLConnectIsAStartUpError() async throws {
        var flags = Self.sqlFlags
        flags["sql_connect"] = ["host=/tmp dbname='unterminated"]
        await #expect(throws: ConfigError.self) {
            _ = try await ServerConfig.load(flags: flags, environment: [:], configFile: nil)
        }
    }

    /// The service itself: with `passdb: sql` no passwd_file is read or needed (no
    /// connection is opened before `startUserDatabase`); with the passwd-file it is required.
    @Test func theServiceStartsWithoutAPasswdFileOnlyWithSQL() throws {
        let loop = try EventLoop()
        let logger = Logger(label: "pop3d.test") { _ in SwiftLogNoOpLogHandler() }
        var config = ServerConfig()
        config.mail = "maildir:/tmp/pop3d-nonexistent/%u/Maildir"
        config.passdb = .sql
        config.sqlConnect = "host=/nonexistent-pop3d dbname=mail"
        config.sqlPasswordQuery = Self.query
        config.authCacheSize = 0
        let service = try POP3Service(config: config, loop: loop, logger: logger)
        #expect(service.userDB != nil)
        #expect(service.userDB?.pool.readyCount == 0)
        #expect(!service.authCache.isEnabled)
        config.passdb = .passwdFile
        do {
            _ = try POP3Service(config: config, loop: loop, logger: logger)
            Issue.record("the passwd-file user database started without passwd_file")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix("passwd_file"), "\(e)")
        }
    }
}
