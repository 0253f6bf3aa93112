import CShim
import Glibc
import Testing
@testable import Reactor

@Suite(.serialized) struct ReactorSuite {}

extension ReactorSuite {
    @Test func timersRunInDeadlineOrderAndFIFOOnTies() throws {
        let loop = try EventLoop()
        var order: [String] = []
        loop.scheduleTimer(after: 30_000_000) { order.append("c30") }
        loop.scheduleTimer(after: 10_000_000) { order.append("a10") }
        loop.scheduleTimer(after: 20_000_000) { order.append("b20") }
        let start = cshim_monotonic_ns()
        try runLoop(loop) { order.count == 3 }
        #expect(order == ["a10", "b20", "c30"])
        #expect(cshim_monotonic_ns() - start >= 30_000_000)

        var ties: [Int] = []
        for i in 0..<50 { loop.scheduleTimer(after: 5_000_000) { ties.append(i) } }
        try runLoop(loop) { ties.count == 50 }
        #expect(ties == Array(0..<50))
    }

    @Test func cancelledTimersNeverRun() throws {
        let loop = try EventLoop()
        var ran: [Int] = []
        var ids: [TimerID] = []
        for i in 0..<100 { ids.append(loop.scheduleTimer(after: UInt64(i % 10) * 1_000_000) { ran.append(i) }) }
        for (i, id) in ids.enumerated() where i % 2 == 1 { loop.cancelTimer(id) }
        loop.cancelTimer(ids[1])  // twice is harmless
        var done = false
        loop.scheduleTimer(after: 20_000_000) { done = true }
        try runLoop(loop) { done }
        #expect(Set(ran) == Set(stride(from: 0, to: 100, by: 2)))
        #expect(loop.scheduledTimerCount == 0)
    }

    @Test func timerHeapCompactsAfterMassCancel() {
        var heap = TimerHeap()
        var ids: [TimerID] = []
        for i in 0..<10_000 { ids.append(heap.push(deadline: UInt64(i), body: {})) }
        for id in ids.dropFirst(10) { heap.cancel(id) }
        #expect(heap.entries.count < 10 * 2 + TimerHeap.compactionSlack + 1)
        var popped = 0
        while heap.popDue(now: UInt64.max) != nil { popped += 1 }
        #expect(popped == 10)
    }

    @Test func wakerRunsBodyOnLoopFromAnotherThread() throws {
        let loop = try EventLoop()
        var woken = 0
        let waker = try loop.makeWaker { woken += 1 }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(waker)
        pthread_create(&thread, nil, { raw in
            let waker = Unmanaged<Waker>.fromOpaque(raw!).takeRetainedValue()
            waker.wake()
            return nil
        }, box.toOpaque())
        try runLoop(loop) { woken >= 1 }
        pthread_join(thread, nil)
        #expect(woken == 1)
    }

    @Test func socketAddressParsing() {
        let v4 = SocketAddress(parsing: "127.0.0.1:1110")
        #expect(v4?.family == .ipv4)
        #expect(v4?.port == 1110)
        #expect(v4?.description == "127.0.0.1:1110")
        #expect(v4?.addressBytes == [127, 0, 0, 1])
        let v6 = SocketAddress(parsing: "[::1]:1110")
        #expect(v6?.family == .ipv6)
        #expect(v6?.ipString == "::1")
        #expect(v6?.description == "[::1]:1110")
        #expect(v6?.addressBytes == Array(repeating: 0, count: 15) + [1])
        for bad in ["", "1.2.3.4", "::1:110", "[::1]110", "1.2.3.4:99999", "1.2.3:1", "host:1", "[::1]:", "1.2.3.4:-1", "1.2.3.4:+1"] {
            #expect(SocketAddress(parsing: bad) == nil, "\(bad)")
        }
    }
}
