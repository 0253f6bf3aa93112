import CoreMetrics
import Prometheus

/// The master's own series: what only the master knows (its workers), and the process
/// facts of the host's service (start time and build of the master, which outlives workers).
final class MasterMetrics {
    let registry = PrometheusCollectorRegistry()
    let workers: CoreMetrics.Gauge
    let restarts: CoreMetrics.Counter

    init() {
        let f = HelpedPrometheusFactory(registry: registry)
        workers = CoreMetrics.Gauge(label: "pop3d_workers", dimensions: [], factory: f)
        restarts = CoreMetrics.Counter(label: "pop3d_worker_restarts_total", dimensions: [], factory: f)
        POP3Metrics.recordProcessFacts(factory: f)
    }
}

/// What the master keeps of its workers' metrics between scrapes.
struct MasterMetricsState {
    var master: MasterMetrics?
    /// Counters and histograms of workers that have exited, summed: host totals never go
    /// down when a worker is restarted.
    var retired = ExpositionMerge(skipping: POP3Metrics.processFamilies)
    /// Each live worker's latest complete snapshot, read every tick: what is kept of a
    /// worker killed in the middle of a write.
    var lastSnapshot: [Int: [UInt8]] = [:]
}

extension WorkerMaster {
    /// The host's `/metrics` body: every worker's series summed, those of exited workers
    /// included for counters and histograms, plus the master's own series
    /// (`pop3d_workers`, `pop3d_worker_restarts_total`, `pop3d_start_time_seconds`,
    /// `pop3d_build_info`). Empty when this master does not collect metrics.
    public func renderMetrics(into buffer: inout [UInt8]) {
        guard metricsShare != nil, let master = metricsState.master else { return }
        cacheMetricSnapshots()
        master.workers.record(workers.filter { $0.pid != nil }.count)
        master.registry.emit(into: &buffer)
        var merge = ExpositionMerge(skipping: POP3Metrics.processFamilies)
        var retired: [UInt8] = []
        metricsState.retired.render(into: &retired)
        merge.add(retired)
        for worker in workers where worker.pid != nil {
            if let text = metricsState.lastSnapshot[worker.id] { merge.add(text) }
        }
        merge.render(into: &buffer)
    }

    /// Reads every live worker's snapshot into `metricsState.lastSnapshot`.
    func cacheMetricSnapshots() {
        guard let share = metricsShare else { return }
        for worker in workers where worker.pid != nil {
            if let text = share.snapshot(worker: worker.id) { metricsState.lastSnapshot[worker.id] = text }
        }
    }

    /// A worker of slot `id` was reaped: its last counts join the retired sums, and its slot
    /// is emptied for the next worker.
    func retireMetrics(of id: Int) {
        guard let share = metricsShare else { return }
        if let text = share.snapshot(worker: id) ?? metricsState.lastSnapshot[id] {
            metricsState.retired.add(text, countersOnly: true)
        }
        metricsState.lastSnapshot[id] = nil
        share.clear(worker: id)
    }
}
