import POP3
import Testing

/// Issue 10 item 2: a positive reply is written only once the glue has secured what it
/// promises (the message file for RETR/TOP, the TLS session for STLS).
@Suite struct ReplyAfterResourceTests {
    /// RETR and TOP write nothing before the glue answers `messageOpened`.
    @Test func retrAndTopWriteNothingBeforeTheFileIsOpen() {
        var harness = Harness()
        harness.feed(login)
        for (command, expected) in [("RETR 2", SessionAction.openMessage(index: 1, bodyLines: nil)),
                                    ("TOP 3 1", SessionAction.openMessage(index: 2, bodyLines: 1))] {
            var out = ByteArraySink()
            let action = command.utf8.withContiguousStorageIfAvailable {
                harness.session.handleLine(UnsafeRawBufferPointer($0), out: &out)
            }
            #expect(action == expected)
            #expect(out.text == "", "\(command) answered before the file was opened: \(out.text)")
            // A second command while the open is out is refused, not run.
            let busy = "NOOP".utf8.withContiguousStorageIfAvailable {
                harness.session.handleLine(UnsafeRawBufferPointer($0), out: &out)
            }
            #expect(busy == SessionAction.none)
            #expect(out.text == "-ERR busy\r\n")
            out = ByteArraySink()
            let streamed = harness.session.messageOpened(.opened, out: &out)
            if case .openMessage(let index, let lines) = expected {
                #expect(streamed == .streamMessage(index: index, bodyLines: lines))
            }
            #expect(out.text.hasPrefix("+OK "))
        }
    }

    /// A message another program removed, or one that cannot be read: `-ERR [SYS/TEMP]`
    /// with the message number, the session stays in TRANSACTION and QUIT commits its DELEs.
    @Test func goneOrUnreadableMessageIsAnErrAndTheSessionGoesOn() {
        var harness = Harness()
        harness.openOutcome = .gone
        harness.feed(login + "DELE 1\r\nRETR 2\r\n")
        #expect(harness.replies.hasSuffix("+OK message 1 deleted\r\n-ERR [SYS/TEMP] message 2 was removed by another program\r\n"),
                "\(harness.replies)")
        harness.openOutcome = .unreadable
        harness.out = ByteArraySink()
        harness.feed("TOP 3 0\r\nRETR 2\r\nSTAT\r\nQUIT\r\n")
        #expect(harness.out.text.hasPrefix(
            "-ERR [SYS/TEMP] message 3 cannot be read\r\n-ERR [SYS/TEMP] message 2 cannot be read\r\n+OK 2 83\r\n+OK POP3 server signing off"),
                "\(harness.out.text)")
        #expect(harness.deletions == [[0]])
        #expect(harness.session.counters.messagesRetrieved == 0)
        #expect(harness.session.counters.octetsRetrieved == 0)
    }

    /// `messageOpened` with no RETR/TOP pending is refused, never a stream.
    @Test func messageOpenedWithoutARequestIsRefused() {
        var harness = Harness()
        harness.feed(login)
        var out = ByteArraySink()
        #expect(harness.session.messageOpened(.opened, out: &out) == SessionAction.none)
        #expect(out.text.hasPrefix("-ERR"))
    }

    /// STLS writes nothing before the glue created the TLS session; when it cannot, the
    /// client gets `-ERR [SYS/TEMP]` and the session goes on in plaintext, STLS still offered.
    @Test func stlsAnswersOnlyAfterTheTLSSessionExists() {
        var harness = Harness(config: Harness.config(plaintext: false, stls: true))
        var out = ByteArraySink()
        let action = "STLS".utf8.withContiguousStorageIfAvailable {
            harness.session.handleLine(UnsafeRawBufferPointer($0), out: &out)
        }
        #expect(action == .startTLS)
        #expect(out.text == "")

        var failing = Harness(config: Harness.config(plaintext: false, stls: true))
        failing.tlsAvailable = false
        failing.feed("STLS\r\nCAPA\r\n")
        #expect(failing.replies.hasPrefix("-ERR [SYS/TEMP] TLS not available right now\r\n+OK"), "\(failing.replies)")
        #expect(failing.replies.contains("STLS\r\n"))
    }
}
