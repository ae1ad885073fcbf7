"""Prometheus metrics: a custom collector that reads the current figures at each scrape.

Queue figures (depth, oldest age, consumers, state) and the stream's lag are those of the
monitor's latest check, with that check's age beside them; tasks by state and open incidents are
counted in the database; one counter per live monitor (events written; ``rate()`` of it is the
ingest rate).
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
        up = GaugeMetricFamily(
            "tasktrail_broker_up", "1 if Redis (the broker) answered this scrape's reads."
        )
        up.add_metric([], 1 if f.redis_up else 0)
        yield up
        check_age = GaugeMetricFamily(
            "tasktrail_alert_check_age_seconds",
            "Seconds since the monitor's latest check, which the queue figures come from "
            "(absent: no check to show, the monitor is not running or its checks are off).",
        )
        if f.checked is not None:
            check_age.add_metric([], f.checked.age)
        yield check_age
        fresh = f.checked if f.checked is not None and not f.checked.stale else None
        absent = " Absent while that check is stale."
        depth = GaugeMetricFamily(
            "tasktrail_queue_depth",
            "Messages waiting on the queue, priority sub-queues included, at the monitor's latest "
            "check." + absent,
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "tasktrail_queue_oldest_age_seconds",
            "Age of the oldest waiting message (stamped at publish), at the latest check." + absent,
            labels=["queue"],
        )
        consumers = GaugeMetricFamily(
            "tasktrail_queue_consumers",
            "Workers consuming the queue, at the latest check." + absent,
            labels=["queue"],
        )
        rate = GaugeMetricFamily(
            "tasktrail_queue_finished_per_minute",
            "Tasks finished per minute over the last five minutes, at the latest check." + absent,
            labels=["queue"],
        )
        state = GaugeMetricFamily(
            "tasktrail_queue_state",
            "1 for the queue's state at the latest check (ok, warning or stuck)." + absent,
            labels=["queue", "state"],
        )
        check_redis = GaugeMetricFamily(
            "tasktrail_alert_check_redis_seconds", "Redis time of the latest alert check."
        )
        if fresh is not None:
            if fresh.redis_seconds is not None:
                check_redis.add_metric([], fresh.redis_seconds)
            for name, q in sorted(fresh.queues.items()):
                if q.depth is not None:
                    depth.add_metric([name], q.depth)
                if q.oldest_age is not None:
                    oldest.add_metric([name], q.oldest_age)
                if q.consumers is not None:
                    consumers.add_metric([name], q.consumers)
                if q.finished_per_minute is not None:
                    rate.add_metric([name], q.finished_per_minute)
                for value in QUEUE_STATES:
                    state.add_metric([name, value], 1 if q.state == value else 0)
        yield from (depth, oldest, consumers, rate, state, check_redis)

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
        fresh = f.checked if f.checked is not None and not f.checked.stale else None
        lag = GaugeMetricFamily(
            "tasktrail_monitor_lag_entries",
            "Stream entries no monitor had read, at the monitor's latest check.",
        )
        if fresh is not None and fresh.lag_entries is not None:
            lag.add_metric([], fresh.lag_entries)
        yield lag
        lag_age = GaugeMetricFamily(
            "tasktrail_monitor_lag_seconds",
            "Age of the oldest event not yet written, at the monitor's latest check.",
        )
        if fresh is not None and fresh.lag_seconds is not None:
            lag_age.add_metric([], fresh.lag_seconds)
        yield lag_age


def render(read: Callable[[], MetricsFigures] = metrics_figures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TasktrailCollector(read))
    return generate_latest(registry)
