"""Prometheus metrics of one coordsync process.

Every node server serves them at ``/metrics`` in the Prometheus text
format (:func:`render`). The worker engine records, for every daemon,
passes, items by outcome, lock latency and contention, and the figures
the daemon declares (its :class:`~coordsync.common.worker.Figures`
fields, summed as counters; see :meth:`Metrics.record_figures`); the
coordinator records outages and reconnects; the node API records its
requests by route and status.

The metrics live in one registry per process, made on first use
(:func:`get`), never at import. Names follow Prometheus conventions:
counters end in ``_total`` once exposed, durations are in seconds.
"""

import threading

import prometheus_client
from prometheus_client import parser

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# Seconds: from a lock round trip on loopback to a pass of hours.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0)
PASS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0,
                3600.0, 4 * 3600.0, 24 * 3600.0)
ITEM_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
                600.0)


class Metrics:
    """The process's metric families, in a registry of their own."""

    def __init__(self, registry=None):
        self.registry = registry or prometheus_client.CollectorRegistry()
        reg = {'registry': self.registry}
        counter = prometheus_client.Counter
        gauge = prometheus_client.Gauge
        histogram = prometheus_client.Histogram
        # -- the worker engine, for every daemon ---------------------------
        self.passes = counter(
            'coordsync_passes', 'Passes ended, by daemon and mode '
            '(coordinated or static).', ['worker', 'mode'], **reg)
        self.pass_duration = histogram(
            'coordsync_pass_duration_seconds', 'How long passes took.',
            ['worker'], buckets=PASS_BUCKETS, **reg)
        self.last_pass_end = gauge(
            'coordsync_last_pass_end_timestamp_seconds',
            'Unix time the last pass ended.', ['worker'], **reg)
        self.items = counter(
            'coordsync_items', 'Items (partitions, databases, '
            'containers, queue containers) ended, by outcome: '
            'succeeded, failed, fenced, interrupted, lockups.',
            ['worker', 'outcome'], **reg)
        self.item_duration = histogram(
            'coordsync_item_duration_seconds', 'Time spent on one item '
            'under its lock.', ['worker'], buckets=ITEM_BUCKETS, **reg)
        self.lock_take = histogram(
            'coordsync_lock_take_seconds', 'Latency of taking a window '
            'of item locks (one round trip on ZooKeeper).', ['worker'],
            buckets=LATENCY_BUCKETS, **reg)
        self.lock_release = histogram(
            'coordsync_lock_release_seconds', 'Latency of releasing an '
            'item lock.', ['worker'], buckets=LATENCY_BUCKETS, **reg)
        self.lock_contended = counter(
            'coordsync_lock_contended', 'Items skipped (at first) '
            'because another member held their lock.', ['worker'], **reg)
        self.figures = counter(
            'coordsync_worker_figures', 'What daemons did, by the names '
            'of their stats lines: objects and bytes moved, rows '
            'synced, objects reconciled, updates sent and failed...',
            ['worker', 'figure'], **reg)
        self.gauges = gauge(
            'coordsync_worker_gauge', 'Levels daemons report: sync rows '
            'behind, reconciler queue depth, async pendings...',
            ['worker', 'name'], **reg)
        self.backlog = gauge(
            'coordsync_backlog_items', 'Items this member owns that no '
            'pass of it finished within [<daemon>] backlog_intervals '
            'intervals.', ['worker'], **reg)
        # -- fencing -------------------------------------------------------
        self.fencing_refusals = counter(
            'coordsync_fencing_refusals', 'Requests refused by a fence: '
            'side="server" when this node refused a stale token, '
            'side="worker" when a worker of this process was fenced off '
            'its item.', ['side'], **reg)
        # -- coordination --------------------------------------------------
        self.outages = counter(
            'coordsync_coordination_outages', 'Coordination outages '
            'begun (the backend stopped answering or the session was '
            'lost).', **reg)
        self.reconnects = counter(
            'coordsync_coordination_reconnects', 'Outages ended: the '
            'member is back in its group.', **reg)
        self.coordination_healthy = gauge(
            'coordsync_coordination_healthy', '1 while the member is in '
            'its group and no outage is in progress.', **reg)
        # -- the node API --------------------------------------------------
        self.http_requests = counter(
            'coordsync_http_requests', 'Node API requests answered, by '
            'route, method and status code.',
            ['route', 'method', 'status'], **reg)
        self.http_duration = histogram(
            'coordsync_http_request_duration_seconds', 'Node API request '
            'time until the response started.', ['route'],
            buckets=LATENCY_BUCKETS, **reg)

    def record_figures(self, worker, figures, gauge_names=()):
        """Add a pass's figures (a dict) to the counters; names in
        ``gauge_names`` are levels, set rather than added."""
        for name, value in figures.items():
            if not isinstance(value, (int, float)) or isinstance(value,
                                                                 bool):
                continue
            if name in gauge_names:
                self.gauges.labels(worker, name).set(value)
            elif value > 0:
                self.figures.labels(worker, name).inc(value)

    def render(self):
        """The text exposition format, as bytes."""
        return prometheus_client.generate_latest(self.registry)


def parse(text):
    """``{(sample name, frozenset(labels.items())): value}`` of a
    scrape in the text format (for tests and tools that read one)."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = (
                sample.value)
    return found


_lock = threading.Lock()
_metrics = None


def get():
    """This process's Metrics, made on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def reset():
    """Forget the process's metrics (tests)."""
    global _metrics
    with _lock:
        _metrics = None
