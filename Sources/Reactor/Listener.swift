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
    /// The socket's local address when the listener is bound to one address (then it is the
    /// listener's, and no getsockname is needed); nil for a wildcard listener (0.0.0.0, ::),
    /// whose connections each have their own (`SocketAddress.local(of:)`).
    public let localAddress: SocketAddress?
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
    /// `address` when it is one address, nil for a wildcard (or unknown) one: handed to every
    /// accepted socket as its local address.
    let specificAddress: SocketAddress?
    /// TCP_NODELAY is set on the listening socket, so every accepted socket has it already
    /// (Linux copies the listener's socket options into the new socket: tcp_create_openreq_child
    /// clones `nonagle`; `ListenerTests` checks it with getsockopt). False only when the
    /// setsockopt failed (an inherited socket that is not TCP): then each accepted socket
    /// gets it, as before.
    let acceptedInheritNoDelay: Bool
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
        self.specificAddress = Self.specific(self.address)
        self.acceptedInheritNoDelay = Socket.setNoDelay(fd) == 0
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
        // A transparent socket (systemd's Transparent=, TPROXY) accepts connections addressed
        // to other addresses than its own: their local addresses are asked one by one.
        self.specificAddress = Self.isTransparent(fd) ? nil : Self.specific(self.address)
        // On systemd's socket this sets the option for every process sharing it (systemd's own
        // `NoDelay=` does the same); pop3d sets it on every client socket either way.
        self.acceptedInheritNoDelay = Socket.setNoDelay(fd) == 0
    }

    /// IP_TRANSPARENT or IPV6_TRANSPARENT is set (a failing getsockopt counts as set: the
    /// per-connection getsockname is the safe side).
    private static func isTransparent(_ fd: Int32) -> Bool {
        for (level, name) in [(Int32(IPPROTO_IP), IP_TRANSPARENT), (Int32(IPPROTO_IPV6), IPV6_TRANSPARENT)] {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            let rc = getsockopt(fd, level, Int32(name), &value, &length)
            if rc == 0 && value != 0 { return true }
            if rc != 0 && errno != ENOPROTOOPT && errno != EOPNOTSUPP { return true }
        }
        return false
    }

    /// nil for a wildcard address (all zeros: INADDR_ANY, in6addr_any) or none.
    private static func specific(_ address: SocketAddress?) -> SocketAddress? {
        guard let address, address.addressBytes.contains(where: { $0 != 0 }) else { return nil }
        return address
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
            if !acceptedInheritNoDelay { _ = Socket.setNoDelay(client) }
            return AcceptedSocket(fd: client, peer: peer, listenerName: name, localAddress: specificAddress)
        }
    }
}
