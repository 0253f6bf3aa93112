import Maildrop
import POP3
import Reactor

/// A RETR/TOP in progress: the open message file and the encoder's state. A class so that
/// the stream advances in place inside `Phase.streaming` (one allocation per RETR, next to
/// the reader's own).
final class MessageStream {
    let index: Int
    let reader: MessageReader
    var encoder: MessageEncoder

    init(index: Int, reader: MessageReader, bodyLines: Int?, workarounds: ClientWorkarounds = []) {
        self.index = index
        self.reader = reader
        self.encoder = MessageEncoder(bodyLines: bodyLines, workarounds: workarounds)
    }
}

/// Listings (LIST/UIDL under backpressure) and RETR/TOP: the message file is opened BEFORE
/// the session answers (issue 10 item 2), so a message that another program removed, or that
/// cannot be read, gets an `-ERR` and the session goes on to commit its DELEs at QUIT. Only a
/// failure in the middle of a stream, after `+OK n octets`, drops the connection.
extension POP3Connection {
    func produce() {
        var sink = OutputSink(connection: connection)
        while !connection.isClosed && !connection.isOutputFull {
            let done = session.produceMore(out: &sink, maxBytes: POP3Service.listingChunkBytes)
            sink.finish()
            if done {
                resume()
                return
            }
        }
    }

    /// Opens (or locates after a rename) message `index`, then lets the session answer.
    func openMessage(index: Int, bodyLines: Int?) {
        guard let maildrop else { return close(.storageFailure("no maildrop for RETR/TOP")) }
        var reader: MessageReader? = nil
        let outcome: MessageOpenOutcome
        do {
            reader = try maildrop.openMessage(index)
            outcome = .opened
        } catch .gone(let why) {
            service.logger.notice("message \(index + 1) gone: \(why)", metadata: metadata)
            outcome = .gone
        } catch {
            service.logger.warning("message \(index + 1) cannot be read: \(error)", metadata: metadata)
            outcome = .unreadable
        }
        var sink = OutputSink(connection: connection)
        let action = session.messageOpened(outcome, out: &sink)
        sink.finish()  // queued before the stream's own sink writes the message
        guard case .streamMessage(let streamed, let lines) = action, let reader, streamed == index else {
            reader?.close()
            return perform(action)
        }
        let stream = MessageStream(index: index, reader: reader, bodyLines: lines,
                                   workarounds: session.config.clientWorkarounds)
        enter(.streaming(stream))
        self.stream(stream)
    }

    /// Reads the message in bounded chunks until the output queue reaches its high-water mark,
    /// then waits for `connectionWritable` (below the low-water mark): a slow reader costs a
    /// few chunks of memory whatever the message size.
    func stream(_ stream: MessageStream) {
        // Flushed after every chunk: the high-water check below must see the bytes, and the
        // next command's reply must not overtake the end of the message.
        var sink = OutputSink(connection: connection)
        let buffer = service.streamBuffer
        while !connection.isClosed && !connection.isOutputFull {
            let n: Int
            do {
                n = try stream.reader.read(into: buffer)
            } catch {
                // `+OK n octets` is out: the only honest way out is to drop the connection
                // (no UPDATE happens, nothing is lost).
                service.logger.error("message \(stream.index + 1) read failed mid-stream: \(error)", metadata: metadata)
                return close(.messageUnreadable("read failed mid-stream: \(error)"))
            }
            if n > 0 {
                stream.encoder.encode(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), out: &sink)
            }
            if n == 0 && stream.reader.endedShort && !stream.encoder.isComplete {
                // Truncated or replaced by another program since login: fewer octets than
                // announced. Ending the message here would hand the client a different
                // message under the announced size; without a terminator it knows.
                sink.finish()
                service.logger.error("message \(stream.index + 1) ended before its listed size: \(stream.reader.path) was truncated or replaced by another program",
                                     metadata: metadata)
                // A login index would vouch for the old size at every later login (the folders
                // did not change): without it the next login sizes the file again.
                maildrop?.forgetLoginIndex()
                return close(.messageUnreadable("\(stream.reader.path) shorter than listed"))
            }
            if n == 0 || stream.encoder.isComplete {
                stream.encoder.finish(out: &sink)
                sink.finish()
                session.messageStreamed(stream.encoder)
                resume()  // leaving `.streaming` closes the file
                return
            }
            sink.finish()
        }
    }
}
