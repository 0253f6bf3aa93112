/// RFC 1725 §5 `LAST`, removed by RFC 1939 and kept for the clients that still send it
/// (mutt's and neomutt's `pop_last`: fetch only the messages after LAST, and on `-ERR` fetch
/// them all again). Only with `pop3_enable_last` (`SessionConfig.lastEnabled`), as Dovecot.
///
/// The number: the highest message number accessed, 0 for none. It starts at the highest
/// message whose file is marked seen (`MaildropListing.lastSeen`, the Maildir `S` flag:
/// Dovecot's rule, so a maildrop read by Dovecot or an IMAP client starts where they left it),
/// RETR raises it (TOP does not: Dovecot's choice), DELE leaves it (RFC 1725's example: LAST
/// stays 3 after DELE 2), and RSET puts back the value it had at login (RFC 1725's example,
/// where LAST is 1 again after RSET). Dovecot's RSET instead removes the seen flag from every
/// message of the mailbox; pop3d changes no flag another program set.
///
/// Across sessions the number lives in the maildrop: the messages RETR sent (and not deleted)
/// get the seen flag in UPDATE (`messagesToMarkSeen`, which the glue hands to
/// `Maildrop.markSeen`), as Dovecot sets `\Seen` at QUIT. RSET forgets this session's RETRs
/// for that too (Dovecot clears its pending seen marks the same way).
extension Session {
    /// With `LAST` on, after QUIT: the 0-based messages RETR sent since login or the last
    /// RSET and not deleted, in ascending order; empty with `LAST` off.
    public var messagesToMarkSeen: [Int] {
        var indices: [Int] = []
        for index in retrieved.indices where retrieved[index] && !deleted[index] { indices.append(index) }
        return indices
    }

    mutating func last(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        out.write("+OK ")
        out.write(decimal: lastAccessed)
        out.write("\r\n")
        return .none
    }
}
