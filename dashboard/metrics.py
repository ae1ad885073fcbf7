"""Prometheus metrics: a custom collector that reads the current figures at each scrape.

Gauges of the moment (queue depth, oldest age, consumers, tasks by state, open incidents, lag)
and one counter per live monitor (events written; ``rate()`` of it is the ingest rate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dashboard.constants import RULES
from dashboard.selectors.metrics import LIVE_STATES, MetricsFigures, metrics_figures

QUEUE_STATES = ("ok", "warning", "stuck")


class TasktrailCollector(Collector):
    def __init__(self, read: Callable[[], MetricsFigures] = metrics_figures) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        f = self.read()
        yield from self._queues(f)
        yield from self._tasks(f)
        incidents = GaugeMetricFamily(
            "tasktrail_incidents_open", "Open alert incidents, by rule.", labels=["rule"]
        )
        for rule in RULES:
            incidents.add_metric([rule], f.incidents_open.get(rule, 0))
        yield incidents
        yield from self._monitor(f)

    def _queues(self, f: MetricsFigures) -> Iterator[Metric]:
        up = GaugeMetricFamily("tasktrail_broker_up", "1 if the broker answered this scrape.")
        up.add_metric([], 0 if f.queues is None else 1)
        yield up
        depth = GaugeMetricFamily(
            "tasktrail_queue_depth",
            "Messages waiting on the queue, priority sub-queues included.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "tasktrail_queue_oldest_age_seconds",
            "Age of the oldest waiting message (stamped at publish).",
            labels=["queue"],
        )
        for queue in f.queues or []:
            depth.add_metric([queue.name], queue.depth)
            age = queue.oldest_age()
            if age is not None:
                oldest.add_metric([queue.name], age)
        yield depth
        yield oldest
        checked = f.checked
        consumers = GaugeMetricFamily(
            "tasktrail_queue_consumers",
            "Workers consuming the queue, at the monitor's latest check.",
            labels=["queue"],
        )
        rate = GaugeMetricFamily(
            "tasktrail_queue_finished_per_minute",
            "Tasks finished per minute over the last five minutes, at the latest check.",
            labels=["queue"],
        )
        state = GaugeMetricFamily(
            "tasktrail_queue_state",
            "1 for the queue's state at the latest check (ok, warning or stuck).",
            labels=["queue", "state"],
        )
        check_age = GaugeMetricFamily(
            "tasktrail_alert_check_age_seconds", "Seconds since the monitor's latest alert check."
        )
        check_redis = GaugeMetricFamily(
            "tasktrail_alert_check_redis_seconds", "Redis time of the latest alert check."
        )
        if checked is not None:
            check_age.add_metric([], checked.age)
            if checked.redis_seconds is not None:
                check_redis.add_metric([], checked.redis_seconds)
            for name, q in sorted(checked.queues.items()):
                if q.consumers is not None:
                    consumers.add_metric([name], q.consumers)
                if q.finished_per_minute is not None:
                    rate.add_metric([name], q.finished_per_minute)
                for value in QUEUE_STATES:
                    state.add_metric([name, value], 1 if q.state == value else 0)
        yield from (consumers, rate, state, check_age, check_redis)

    def _tasks(self, f: MetricsFigures) -> Iterator[Metric]:
        live = GaugeMetricFamily(
            "tasktrail_tasks", "Tasks now in a non-final state, by state.", labels=["state"]
        )
        for value in LIVE_STATES:
            live.add_metric([str(value)], f.tasks_live.get(value, 0))
        yield live
        finished = GaugeMetricFamily(
            "tasktrail_tasks_finished_last_hour",
            "Tasks that finished in the last hour, by final state.",
            labels=["state"],
        )
        for final, n in sorted(f.finished_last_hour.items()):
            finished.add_metric([final], n)
        yield finished

    def _monitor(self, f: MetricsFigures) -> Iterator[Metric]:
        monitors = GaugeMetricFamily(
            "tasktrail_monitors", "Monitors that reported in the last minute."
        )
        monitors.add_metric([], len(f.monitors))
        yield monitors
        events = CounterMetricFamily(
            "tasktrail_monitor_events",
            "Events written by each live monitor since it started (rate() is the ingest rate).",
            labels=["monitor"],
        )
        rejected = CounterMetricFamily(
            "tasktrail_monitor_rejected_events",
            "Malformed events each live monitor sent to the dead-letter stream.",
            labels=["monitor"],
        )
        for beat in f.monitors:
            events.add_metric([beat.consumer], beat.events)
            rejected.add_metric([beat.consumer], beat.rejected)
        yield events
        yield rejected
        lag = GaugeMetricFamily(
            "tasktrail_monitor_lag_entries", "Stream entries no monitor has read yet."
        )
        if f.lag_entries is not None:
            lag.add_metric([], f.lag_entries)
        yield lag
        lag_age = GaugeMetricFamily(
            "tasktrail_monitor_lag_seconds", "Age of the oldest event not yet written."
        )
        if f.lag_seconds is not None:
            lag_age.add_metric([], f.lag_seconds)
        yield lag_age


def render(read: Callable[[], MetricsFigures] = metrics_figures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TasktrailCollector(read))
    return generate_latest(registry)
