import CShim
import Glibc
import SystemCalls

extension Connection {
    /// Linux IP_BIND_ADDRESS_NO_PORT (since 4.2): a bind with port 0 before connect then picks
    /// the port at connect time from the whole 4-tuple, instead of reserving one of the source
    /// address's ~28,000 ephemeral ports for every socket. Swift's Glibc does not export the
    /// macro (it needs _GNU_SOURCE), CShim does.
    static let ipBindAddressNoPort = Int32(CSHIM_IP_BIND_ADDRESS_NO_PORT)

    /// Opens a nonblocking client connection (pop3bench, tests), from `source` when given
    /// (pop3bench spreads tens of thousands of client sockets over several 127.0.0.x addresses,
    /// because one source address runs out of ephemeral ports towards one server port). The
    /// connect completes in the background: output queues until the socket becomes writable,
    /// and a refused connect closes the connection with `.error` (ECONNREFUSED) or `.reset`.
    public static func connect(to address: SocketAddress, from source: SocketAddress? = nil, loop: EventLoop) throws -> Connection {
        let fd = try syscallBlocking("socket") { Socket.tcp(family: address.addressFamily) }
        _ = Socket.setNoDelay(fd)
        if let source {
            if source.family == .ipv4 {
                _ = Socket.setOption(fd, level: Int32(IPPROTO_IP), name: ipBindAddressNoPort, value: 1)
            }
            do {
                _ = try source.withSockAddr { sa, len in try syscallBlocking("bind") { Glibc.bind(fd, sa, len) } }
            } catch {
                closeDescriptor(fd)
                throw error
            }
        }
        // Not the `syscall` family: a nonblocking connect interrupted by a signal (EINTR) goes on
        // in the background like EINPROGRESS (POSIX connect(2)); calling it again would fail
        // with EALREADY. Completion or failure shows as writability (`.error` or `.reset`).
        let rc = address.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if rc != 0 {
            let err = Glibc.errno
            if err != EINPROGRESS && err != EINTR {
                closeDescriptor(fd)
                throw SyscallError(errno: err, call: "connect")
            }
        }
        let connection = try Connection(fd: fd, peer: address, localName: nil, loop: loop)
        // Our own socket(SOCK_CLOEXEC): no other descriptor shares it (Connection.init(accepted:)).
        connection.closeRemovesRegistration = true
        return connection
    }
}
