/// CAPA (RFC 2449 §5): the same list in AUTHORIZATION and TRANSACTION, except
/// STLS, which exists only before login and before TLS (RFC 2595 §4).
extension Session {
    mutating func capa(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        out.write("+OK capability list follows\r\n")
        out.write("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
        if plaintextAllowed { out.write("USER\r\n") }
        let mechanisms = offeredMechanisms
        if !mechanisms.isEmpty {
            out.write("SASL")
            for mechanism in mechanisms {
                out.write(" ")
                out.write(string: mechanism.rawValue)
            }
            out.write("\r\n")
        }
        if stlsOffered { out.write("STLS\r\n") }
        out.write("EXPIRE ")
        out.write(string: config.expire)
        out.write("\r\nLOGIN-DELAY ")
        out.write(decimal: config.loginDelaySeconds)
        out.write("\r\n")
        if let implementation = config.implementation {
            out.write("IMPLEMENTATION ")
            out.write(sanitized: implementation)
            out.write("\r\n")
        }
        out.write(".\r\n")
        return .none
    }
}
