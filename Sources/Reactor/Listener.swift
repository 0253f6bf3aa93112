import CShim
import Glibc
import SystemCalls

/// A socket just accepted: nonblocking, close-on-exec, owned by whoever receives it.
public struct AcceptedSocket: Sendable {
    /// The connected socket (nonblocking, close-on-exec); the receiver must close it.
    public let fd: Int32
    /// The client's address and port.
    public let peer: SocketAddress
    /// The name of the listener it came from ("pop3", "pop3s" or nil).
    public let listenerName: String?
}

/// A listening TCP socket, bound here or inherited from systemd.
public final class Listener {
    /// Default listen(2) backlog; the kernel caps it at net.core.somaxconn.
    public static let defaultBacklog: Int32 = 4096
    /// Connections accepted per readiness event before the loop serves others (fairness bound).
    public static let maxAcceptsPerEvent = 64
    /// How long a listener stays paused after EMFILE/ENFILE/ENOBUFS/ENOMEM before retrying.
    public static let acceptBackoffNanoseconds: UInt64 = 100_000_000

    /// The listening socket.
    public let fd: Int32
    /// The listener's name for logs and for `Connection.localName` ("pop3", "pop3s" or nil).
    public let name: String?
    /// True for sockets from systemd: they are closed but never shut down (systemd keeps a copy).
    public let inherited: Bool
    /// The address bound (getsockname(2): the real port after binding port 0); nil when an
    /// inherited socket's address cannot be read.
    public let address: SocketAddress?
    private(set) var isClosed = false

    /// Binds and listens on address. Port 0 picks a free port (see `address`).
    public init(bind address: SocketAddress, name: String? = nil, reusePort: Bool = false,
                backlog: Int32 = Listener.defaultBacklog) throws {
        let fd = try syscallBlocking("socket") { Socket.tcp(family: address.addressFamily) }
        do {
            try syscallBlocking("setsockopt(SO_REUSEADDR)") { Socket.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1) }
            if reusePort {
                try syscallBlocking("setsockopt(SO_REUSEPORT)") { Socket.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1) }
            }
            // "[::]" should mean IPv6 only; IPv4 gets its own --listen so both are explicit.
            if address.family == .ipv6 {
                try syscallBlocking("setsockopt(IPV6_V6ONLY)") {
                    Socket.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1)
                }
            }
            _ = try address.withSockAddr { sa, len in try syscallBlocking("bind") { Glibc.bind(fd, sa, len) } }
            try syscallBlocking("listen") { Glibc.listen(fd, backlog) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        self.fd = fd
        self.name = name
        self.inherited = false
        self.address = SocketAddress.local(of: fd) ?? address
    }

    /// Adopts a listening socket inherited from systemd (made nonblocking here).
    public init(inheritedFD fd: Int32, name: String?) throws {
        let flags = try syscallBlocking("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        try syscallBlocking("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        let fdFlags = try syscallBlocking("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
        try syscallBlocking("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) }
        self.fd = fd
        self.name = name
        self.inherited = true
        self.address = SocketAddress.local(of: fd)
    }

    /// Closes our descriptor. Never shutdown(2): on an inherited socket that would break
    /// systemd's copy and every other process sharing it.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        closeDescriptor(fd)
    }

    deinit { close() }

    /// One accept4; nil on EAGAIN.
    func acceptOne() throws -> AcceptedSocket? {
        var storage = sockaddr_storage()
        var len = socklen_t(0)
        switch try syscall("accept4", { cshim_accept4(fd, &storage, &len) }) {
        case .wouldBlock:
            return nil
        case .processed(let client):
            guard let peer = SocketAddress(storage: storage) else {
                closeDescriptor(client)  // not IP (cannot happen on a TCP listener)
                return try acceptOne()
            }
            _ = Socket.setNoDelay(client)
            return AcceptedSocket(fd: client, peer: peer, listenerName: name)
        }
    }
}
