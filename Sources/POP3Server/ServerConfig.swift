import Maildrop
import POP3
/// Every setting of `pop3d serve`, with its default. The README's configuration table
/// is written from this type: keep the two in step.
///
/// Each key can come from (highest priority first) a command-line flag, an environment
/// variable `POP3D_<KEY>` (upper case), or the YAML file given with `--config`.
public struct ServerConfig: Sendable, Equatable {
    /// Plain POP3 listeners, `HOST:PORT` or `[V6]:PORT`. Ignored when systemd passes sockets.
    public var listen: [String] = []
    /// Implicit-TLS listeners (RFC 8314), `HOST:PORT`.
    public var listenTLS: [String] = []
    /// Dovecot-format passwd-file.
    public var passwdFile: String? = nil
    /// Mail location template, e.g. `maildir:/srv/mail/%u/Maildir` or `maildir:%h/Maildir`.
    public var mail: String? = nil
    /// Client networks exempt from failed-login penalties and allowed plaintext logins.
    public var trustedNetworks: [String] = []
    /// trace, debug, info, notice, warning, error, critical.
    public var logLevel: String = "info"
    /// When started as root: the user to switch to after binding.
    public var user: String? = nil
    /// RFC 1939 §3 asks for at least 10 minutes of inactivity before an autologout; a lower
    /// value is accepted (tests, private deployments) and logged as a warning at start.
    public var idleTimeoutSeconds: Int = 600
    /// Time a SIGTERM drain waits for busy sessions before closing them.
    public var shutdownTimeoutSeconds: Int = 30
    /// Connections held at once by this process.
    public var maxConnections: Int = 50_000
    /// Connections held at once from one client address.
    public var maxConnectionsPerIP: Int = 1_000
    /// Connections not yet logged in, held at once.
    public var maxUnauthenticated: Int = 10_000
    /// Bytes of pending output per connection before producers (RETR, LIST) pause.
    public var maxOutputBytes: Int = 256 * 1024
    /// Unknown or malformed commands before the session is closed.
    public var maxBadCommands: Int = 10
    /// Failed logins in one session before it is closed.
    public var maxAuthFailures: Int = 3
    /// RFC 2449 LOGIN-DELAY, seconds between logins of one user (0 = none).
    public var loginDelaySeconds: Int = 0
    /// RFC 2449 EXPIRE: `NEVER` or a number of days.
    public var expire: String = "NEVER"
    /// Announce `IMPLEMENTATION pop3d <version>` in CAPA.
    public var announceImplementation: Bool = true
    /// SO_REUSEPORT on bound listeners, so several processes can share one port.
    public var reusePort: Bool = false
    /// Threads that verify password hashes off the event loop.
    public var authWorkers: Int = 2
    /// Dovecot's `disable_plaintext_auth`: refuse plaintext logins on connections that are
    /// neither TLS nor from loopback or a trusted network.
    public var disablePlaintextAuth: Bool = true
    /// PEM certificate chain(s); several for SNI, matched by position with `tlsKey`.
    public var tlsCert: [String] = []
    /// PEM private key(s).
    public var tlsKey: [String] = []
    /// Lowest TLS version accepted: `TLSv1.2` or `TLSv1.3`.
    public var tlsMinVersion: String = "TLSv1.2"
    /// Seconds a client may take to finish the TLS handshake.
    public var tlsHandshakeTimeoutSeconds: Int = 30
    /// Host name in the greeting's APOP timestamp; defaults to gethostname().
    public var hostname: String? = nil
    /// Dovecot's `auth_mechanisms`: what the greeting (APOP timestamp), CAPA SASL and AUTH
    /// offer. The default offers only what works whatever the users' secret schemes are.
    public var authMechanisms: [AuthMechanism] = AuthMechanism.defaults
    /// Seconds a connection may stay in AUTHORIZATION (TLS handshake included) before it is
    /// closed, whatever it sends: the idle timeout is reset by every command, this deadline
    /// is not. Dovecot's `login_timeout` (180 s there too).
    public var loginTimeoutSeconds: Int = 180
    /// Before login: pending output (bytes) the kernel may refuse before the connection is
    /// closed, as Dovecot's login processes do at 4 KiB (a client sending commands and never
    /// reading). After login the output is throttled at `maxOutputBytes` instead.
    public var maxUnauthenticatedOutputBytes: Int = 4096
    /// Server-side TLS handshake steps per turn of the event loop (each may sign with the
    /// certificate's key); more wait for the next turn, so sessions are served in between.
    public var tlsHandshakesPerTurn: Int = 4
    /// A turn of the event loop longer than this many milliseconds logs a warning naming what
    /// ran (rate-limited to one per 10 s); 0 = never. `EventLoop.recommendedLoopLagWarning`.
    public var loopLagWarningMilliseconds: Int = 50
    /// Password hashes one client address (IPv6: its /64) may have queued or running on the
    /// `auth_workers` at once; beyond it a login gets `-ERR [SYS/TEMP]`. Trusted networks are
    /// exempt. Keeps one address from filling the shared hashing queue.
    public var authMaxQueuedPerIP: Int = 16
    /// Follow the Maildir root (the last component of `mail`) when it is a symbolic link, for
    /// sites that symlink whole Maildirs. new/, cur/, tmp/ and files inside are never followed.
    public var maildirAllowRootSymlink: Bool = false
    /// Load balancers (CIDRs) whose connections must start with a PROXY protocol header (v1
    /// or v2, HAProxy's proxy-protocol.txt): the address in it is then the client's for
    /// every rule and log line. Connections from elsewhere are never parsed for one. Dovecot's
    /// `haproxy_trusted_networks`.
    public var proxyNetworks: [String] = []
    /// Seconds a connection from `proxyNetworks` may take to send its whole PROXY header
    /// before it is closed (nothing is sent to it meanwhile). Dovecot's `haproxy_timeout`.
    public var proxyHeaderTimeoutSeconds: Int = 5
    /// Worker processes (`workers`; `auto` = the CPUs this process may run on). 1 runs the
    /// single process of old, with no master. More: a master that owns the listeners and
    /// supervises this many single-threaded workers (WorkerMaster.swift).
    public var workers: Int = 1
    /// Seconds a worker's loop may go without a heartbeat before the master kills it with
    /// SIGKILL and starts it again (a hung loop). Keep it below systemd's WatchdogSec=.
    public var workerWatchdogTimeoutSeconds: Int = 10
    /// A worker slot that exits this many times within `workerStartLimitIntervalSeconds`
    /// is not started again (systemd's StartLimitBurst=).
    public var workerStartLimitBurst: Int = 5
    /// See `workerStartLimitBurst` (systemd's StartLimitIntervalSec=).
    public var workerStartLimitIntervalSeconds: Int = 10
    /// `metrics_listen`: where `GET /metrics` is served (Prometheus text format), `HOST:PORT`
    /// or `[V6]:PORT`; nil = off. A systemd socket named `metrics` is used instead when
    /// passed. With `workers` > 1 the master serves it (MetricsEndpoint.swift).
    public var metricsListen: String? = nil
    /// `uidl_format`: where unique-ids come from (`maildir`, `dovecot`, `courier`, `uw`,
    /// `cyrus`; issue 14, Maildrop+UIDL.swift).
    public var uidlFormat: UIDLFormat = .maildir
    /// `pop3_enable_last` (Dovecot's name): the RFC 1725 `LAST` command, for mutt's and
    /// neomutt's `pop_last` (Session+Last.swift). Off: `LAST` is an unknown command.
    public var pop3EnableLast = false
    /// `pop3_client_workarounds` (Dovecot's name and words): `outlook-no-nuls`, `oe-ns-eoh`
    /// (ClientWorkarounds.swift); the listed sizes follow what is sent.
    public var pop3ClientWorkarounds: ClientWorkarounds = []
    /// `passdb`: where users and their secrets come from: the `passwd_file`, or PostgreSQL
    /// (`sql`, issue 15; Dovecot's passdb driver names).
    public var passdb: PassDB = .passwdFile
    /// `sql_connect`: a libpq connection string (`host=/run/postgresql dbname=mail
    /// user=pop3d`). Host names needing DNS are refused at start (`SQL.ConnectInfo`).
    public var sqlConnect: String? = nil
    /// `sql_password_query`: `$1` whole user name, `$2` local part, `$3` domain; returns
    /// `password` and optionally `home`, `mail` (`SQL.SQLUserDB`).
    public var sqlPasswordQuery: String? = nil
    /// `sql_connections`: PostgreSQL connections per process.
    public var sqlConnections: Int = 2
    /// `sql_query_timeout`: seconds a connect, a query or a wait for a free connection may
    /// take before the login gets `-ERR [SYS/TEMP]` (the connection is closed and re-opened).
    public var sqlQueryTimeoutSeconds: Int = 5
    /// `auth_cache_size`: users whose database answer is remembered per process (0 = off).
    /// Dovecot's `auth_cache_size` counts bytes; this counts users.
    public var authCacheSize: Int = 100_000
    /// `auth_cache_ttl`: seconds a found user is served from the cache.
    public var authCacheTTLSeconds: Int = 3_600
    /// `auth_cache_negative_ttl`: seconds an unknown name is answered from the cache.
    public var authCacheNegativeTTLSeconds: Int = 600

    /// Every setting at its default (README, configuration table).
    public init() {}
}

extension ServerConfig {
    /// A worker's share of the per-host limits that work by evicting the process's own
    /// sessions: `max_unauthenticated / workers`, rounded up. `max_connections` stays whole:
    /// it is checked against the host's sum on the scoreboard (`POP3Service.hostShare`).
    public func dividedAmongWorkers() -> ServerConfig {
        var share = self
        let n = max(1, workers)
        share.maxUnauthenticated = (maxUnauthenticated + n - 1) / n
        return share
    }
}

/// `passdb`: the source of users.
public enum PassDB: String, Sendable, Equatable, CaseIterable {
    /// Dovecot's passwd-file (`passwd_file`).
    case passwdFile = "passwd-file"
    /// PostgreSQL (`sql_connect`, `sql_password_query`).
    case sql
}

/// A setting that could not be used; the message names the key and the value.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// The start-up or reload error line, naming the key and the value.
    public let description: String
    /// An error with the line `description`.
    public init(_ description: String) { self.description = description }
}
