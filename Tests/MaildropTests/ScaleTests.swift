import Glibc
import Testing
@testable import Maildrop

@Suite struct ScaleTests {
    /// 10,000 messages without W= fields: the cold open reads them all, the
    /// warm one reads none, and lists no folder (the login index). Times are printed for the report.
    @Test func tenThousandMessagesColdAndWarm() throws {
        let f = try Fixture()
        let body = Array("From: a@b\nSubject: s\n\nbody line\n".utf8)
        for i in 0..<10_000 {
            try f.writer.deliver(body, fileName: "\(1_700_000_000 + i / 7).M\(i % 7)P1.host")
        }
        LoginIndexTests.waitForFileSystemClock(f.root)
        let t0 = monotonicSeconds()
        let cold = try Maildrop.open(path: f.root)
        let t1 = monotonicSeconds()
        #expect(cold.count == 10_000)
        #expect(cold.statistics.messagesRead == 10_000)
        #expect(cold.totalSize == 10_000 * crlf(body).count)
        cold.close()
        LoginIndexTests.waitForFileSystemClock(f.root)
        let t2 = monotonicSeconds()
        let warm = try Maildrop.open(path: f.root)
        let t3 = monotonicSeconds()
        #expect(warm.count == 10_000)
        #expect(warm.statistics.messagesRead == 0)
        #expect(warm.statistics.sizesFromIndex == 10_000)
        #expect(warm.statistics.foldersListed == 0)
        #expect(warm.messages.map(\.uid) == cold.messages.map(\.uid))
        print("maildrop 10000 messages: cold open \((t1 - t0) * 1000) ms, warm open \((t3 - t2) * 1000) ms")
    }
}
