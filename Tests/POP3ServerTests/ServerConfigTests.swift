import Testing
import Glibc
@testable import POP3Server

/// Runs `body` with the path of a fresh configuration file holding `text`, removed afterwards
/// (the configuration tests of every issue share it).
func withConfigFile(_ text: String, _ body: (String) async throws -> Void) async throws {
    let path = "/tmp/pop3d-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml"
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
    try #require(fd >= 0)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
    defer { unlink(path) }
    try await body(path)
}

@Suite struct ServerConfigTests {
    @Test func defaultsWithoutAnySource() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(c == ServerConfig())
        #expect(c.idleTimeoutSeconds == 600)
        #expect(c.expire == "NEVER")
        #expect(c.loginTimeoutSeconds == 180)
    }

    @Test func flagsWinOverEnvironmentOverFile() async throws {
        let yaml = """
        listen: ["127.0.0.1:1110", "[::1]:1110"]
        idle_timeout: 900
        max_connections: 100
        login_delay: 60
        mail: "maildir:/srv/mail/%u/Maildir"
        implementation: false

        """
        try await withConfigFile(yaml) { path in
            let c = try await ServerConfig.load(
                flags: ["listen": ["127.0.0.1:2110"]],
                environment: ["POP3D_MAX_CONNECTIONS": "200", "HOME": "/root"],
                configFile: path)
            #expect(c.listen == ["127.0.0.1:2110"])
            #expect(c.maxConnections == 200)
            #expect(c.idleTimeoutSeconds == 900)
            #expect(c.loginDelaySeconds == 60)
            #expect(c.mail == "maildir:/srv/mail/%u/Maildir")
            #expect(c.announceImplementation == false)
        }
    }

    @Test func environmentListsAreCommaSeparated() async throws {
        let c = try await ServerConfig.load(
            flags: [:], environment: ["POP3D_TRUSTED_NETWORKS": "10.0.0.0/8, ::1/128"], configFile: nil)
        #expect(c.trustedNetworks == ["10.0.0.0/8", "::1/128"])
    }

    @Test(arguments: [
        ("POP3D_IDLE_TIMEOUT", "ten", "idle_timeout"),
        ("POP3D_MAX_CONNECTIONS", "0", "max_connections"),
        ("POP3D_REUSE_PORT", "maybe", "reuse_port"),
        ("POP3D_EXPIRE", "soon", "expire"),
        ("POP3D_LOG_LEVEL", "loud", "log_level"),
        ("POP3D_LOGIN_TIMEOUT", "0", "login_timeout"),
    ])
    func badValuesNameTheirKey(env: String, value: String, key: String) async throws {
        do {
            _ = try await ServerConfig.load(flags: [:], environment: [env: value], configFile: nil)
            Issue.record("accepted \(env)=\(value)")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix(key))
        }
    }

    @Test func loginTimeoutFromEnvironmentAndFile() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: ["POP3D_LOGIN_TIMEOUT": "5"], configFile: nil)
        #expect(c.loginTimeoutSeconds == 5)
        try await withConfigFile("login_timeout: 30\n") { path in
            let f = try await ServerConfig.load(flags: [:], environment: [:], configFile: path)
            #expect(f.loginTimeoutSeconds == 30)
        }
    }

    @Test func missingConfigFileIsAClearError() async throws {
        await #expect(throws: ConfigError.self) {
            _ = try await ServerConfig.load(flags: [:], environment: [:], configFile: "/nonexistent/pop3d.yaml")
        }
    }

    /// A FIFO named as the configuration file would block its reader (on SIGHUP a reload
    /// thread for good); an oversized file is a mistake. Both are refused before reading.
    @Test func configFileMustBeARegularFileOfBoundedSize() async throws {
        let dir = "/tmp/pop3d-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #expect(mkdir(dir, 0o700) == 0)
        defer {
            unlink(dir + "/fifo.yaml")
            unlink(dir + "/big.yaml")
            rmdir(dir)
        }
        #expect(mkfifo(dir + "/fifo.yaml", 0o600) == 0)
        do {
            _ = try await ServerConfig.load(flags: [:], environment: [:], configFile: dir + "/fifo.yaml")
            Issue.record("a FIFO was read as a configuration file")
        } catch let error as ConfigError {
            #expect(error.description.contains("is not a regular file"), "\(error)")
        }
        let fd = open(dir + "/big.yaml", O_CREAT | O_WRONLY, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, off_t(ServerConfig.maxConfigFileBytes + 1)) == 0)
        close(fd)
        do {
            _ = try await ServerConfig.load(flags: [:], environment: [:], configFile: dir + "/big.yaml")
            Issue.record("an oversized configuration file was read")
        } catch let error as ConfigError {
            #expect(error.description.contains("at most \(ServerConfig.maxConfigFileBytes) are read"), "\(error)")
        }
    }

    @Test func certificatesAndKeysComeInPairs() async throws {
        await #expect(throws: ConfigError.self) {
            _ = try await ServerConfig.load(flags: ["tls_cert": ["a.pem"]], environment: [:], configFile: nil)
        }
    }
}
