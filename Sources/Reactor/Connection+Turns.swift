extension Connection {
    /// The delegate stopped with complete commands still buffered (its turn is over, so that
    /// one pipelining client cannot starve the others): deliver them again before the next
    /// epoll_wait, without waiting for new bytes that may never come.
    public func redeliverBufferedInput() {
        guard case .open = state, !isReadingPaused, bufferedInputBytes > 0 else { return }
        enqueueRead()
    }
}
