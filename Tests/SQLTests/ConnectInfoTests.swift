import Testing
@testable import SQL

/// `sql_connect` refuses anything libpq would resolve with a blocking DNS lookup.
struct ConnectInfoTests {
    /// True when `problem` finds none (its typed error is the only one `ConnectInfo` throws,
    /// so nothing else is hidden here).
    func accepted(_ text: String, environment: [String: String] = [:]) -> Bool {
        problem(text, environment: environment) == nil
    }

    func problem(_ text: String, environment: [String: String] = [:]) -> ConnectInfo.Problem? {
        do {
            _ = try ConnectInfo(text, environment: { environment[$0] })
            return nil
        } catch {
            return error
        }
    }

    @Test func socketDirectoriesAndNumericAddressesAreAccepted() {
        #expect(accepted("host=/run/postgresql dbname=mail user=pop3d"))
        #expect(accepted("host=127.0.0.1 port=5432 dbname=mail"))
        #expect(accepted("host=::1 dbname=mail"))
        #expect(accepted("host=/run/postgresql,127.0.0.1,@abstract dbname=mail"))
        #expect(accepted("postgresql://%2Frun%2Fpostgresql/mail"))
        #expect(accepted("postgresql://127.0.0.1:5433/mail"))
    }

    @Test func aHostNameNeedsHostaddr() {
        #expect(problem("host=db.example.net dbname=mail") == .hostName("db.example.net"))
        #expect(problem("host=localhost dbname=mail") == .hostName("localhost"))
        #expect(problem("host=/run/postgresql,db2 dbname=mail") == .hostName("db2"))
        #expect(problem("postgresql://db.example.net/mail") == .hostName("db.example.net"))
        // hostaddr given: libpq connects to it and uses host only for TLS and Kerberos names.
        #expect(accepted("host=db.example.net hostaddr=192.0.2.7 dbname=mail"))
        #expect(problem("hostaddr=db.example.net") == .hostaddrNotNumeric("db.example.net"))
        #expect(problem("host=a,b hostaddr=192.0.2.7") == .hostCountMismatch)
    }

    @Test func theEnvironmentCountsOnlyWithoutHost() {
        #expect(accepted("dbname=mail"))  // libpq's compiled-in socket directory
        #expect(problem("dbname=mail", environment: ["PGHOST": "db.example.net"]) == .hostName("db.example.net"))
        #expect(accepted("dbname=mail", environment: ["PGHOST": "db.example.net", "PGHOSTADDR": "192.0.2.7"]))
        #expect(accepted("host=/tmp dbname=mail", environment: ["PGHOST": "db.example.net"]))
        #expect(problem("dbname=mail", environment: ["PGSERVICE": "mail"]) == .service)
        #expect(problem("service=mail") == .service)
    }

    @Test func libpqSyntaxErrorsAreReported() {
        guard case .syntax(let message)? = problem("host=/tmp dbname") else {
            Issue.record("a keyword without = must be refused")
            return
        }
        #expect(message.contains("dbname"))
        guard case .syntax? = problem("nosuchkeyword=1") else {
            Issue.record("an unknown keyword must be refused")
            return
        }
    }
}
