extension Connection {
    /// The delegate stopped with complete commands still buffered (its turn is over, so that
    /// one pipelining client cannot starve the others): deliver them again before the next
    /// epoll_wait, without waiting for new bytes that may never come. While output is throttled
    /// this waits instead: the bytes are delivered once the output drains.
    public func redeliverBufferedInput() {
        guard case .open = state, readingAllowed, bufferedInputBytes > 0 else { return }
        enqueueRead()
    }
}
