import CShim
import Glibc

extension Connection {
    /// Linux IP_BIND_ADDRESS_NO_PORT (since 4.2): a bind with port 0 before connect then picks
    /// the port at connect time from the whole 4-tuple, instead of reserving one of the source
    /// address's ~28,000 ephemeral ports for every socket. Glibc does not export the macro.
    static let ipBindAddressNoPort: Int32 = 24

    /// Like `connect(to:loop:)` but from a chosen local address (pop3bench spreads tens of
    /// thousands of client sockets over several 127.0.0.x addresses, because one source address
    /// runs out of ephemeral ports towards one server port).
    public static func connect(to address: SocketAddress, from source: SocketAddress?, loop: EventLoop) throws -> Connection {
        guard let source else { return try connect(to: address, loop: loop) }
        let fd = try syscallBlocking("socket") { cshim_tcp_socket(address.addressFamily) }
        _ = cshim_set_tcp_nodelay(fd)
        if source.family == .ipv4 {
            _ = cshim_setsockopt_int(fd, Int32(IPPROTO_IP), ipBindAddressNoPort, 1)
        }
        let bound = source.withSockAddr { sa, len in Glibc.bind(fd, sa, len) }
        if bound != 0 {
            let err = Glibc.errno
            closeDescriptor(fd)
            throw SyscallError(errno: err, call: "bind")
        }
        let rc = address.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if rc != 0 {
            let err = Glibc.errno
            if err != EINPROGRESS && err != EINTR {
                closeDescriptor(fd)
                throw SyscallError(errno: err, call: "connect")
            }
        }
        return try Connection(fd: fd, peer: address, localName: nil, loop: loop)
    }
}
