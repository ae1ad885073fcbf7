"""The rules alone: figures and thresholds in, verdicts and words out."""

from __future__ import annotations

import pytest

from dashboard.alerts import rules
from dashboard.alerts.rules import QueueFigures, QueueThresholds, RunningTask, Thresholds

LIMITS = QueueThresholds(
    oldest_seconds=300, warning_oldest_seconds=60, no_consumer_seconds=60, no_progress_seconds=600
)


def queue(**overrides) -> QueueFigures:
    values = {
        "name": "emails",
        "depth": 342,
        "oldest_age": 10.0,
        "consumers": 2,
        "finished_in_window": 50,
        "finished_per_minute": 5.0,
    }
    return QueueFigures(**{**values, **overrides})


def test_the_subject_line_words_of_a_stuck_queue_without_consumer():
    figures = queue(oldest_age=432.4, consumers=0)
    verdict = rules.evaluate_queue(figures, LIMITS, {rules.NO_CONSUMER: 432.0})
    assert verdict.state == "stuck" and verdict.firing
    assert verdict.headline == "queue emails stuck"
    assert verdict.words == "oldest message waiting 7m12s, 342 waiting, no consumer"
    assert set(verdict.fired) == {"oldest", rules.NO_CONSUMER}
    assert "-Q emails" in verdict.cause


@pytest.mark.parametrize(
    ("overrides", "held", "state"),
    [
        ({}, {}, "ok"),
        ({"depth": 0, "oldest_age": None, "consumers": 0}, {}, "ok"),  # nothing waits
        ({"oldest_age": 61.0}, {}, "warning"),
        ({"oldest_age": 300.0}, {}, "stuck"),
        ({"consumers": 0}, {rules.NO_CONSUMER: 30.0}, "warning"),  # not for long enough yet
        ({"consumers": 0}, {rules.NO_CONSUMER: 60.0}, "stuck"),
        ({"finished_in_window": 0}, {rules.NO_PROGRESS: 599.0}, "warning"),
        ({"finished_in_window": 0}, {rules.NO_PROGRESS: 600.0}, "stuck"),
        # no publish stamp on the messages: the timed rules still see it
        ({"oldest_age": None, "consumers": 0}, {rules.NO_CONSUMER: 90.0}, "stuck"),
    ],
)
def test_queue_states(overrides, held, state):
    assert rules.evaluate_queue(queue(**overrides), LIMITS, held).state == state


def test_depth_zero_is_ok_whatever_held():
    verdict = rules.evaluate_queue(
        queue(depth=0, oldest_age=None, consumers=0),
        LIMITS,
        {rules.NO_CONSUMER: 999.0, rules.NO_PROGRESS: 9999.0},
    )
    assert verdict.state == "ok" and verdict.known


def test_a_zero_threshold_turns_a_rule_off_and_a_disabled_queue_is_never_stuck():
    off = QueueThresholds(oldest_seconds=0, warning_oldest_seconds=0, no_consumer_seconds=0)
    verdict = rules.evaluate_queue(queue(oldest_age=9999.0, consumers=0), off, {})
    assert verdict.state == "ok"
    disabled = QueueThresholds(enabled=False)
    assert rules.evaluate_queue(queue(oldest_age=9999.0), disabled, {}).state == "ok"


def test_unknown_consumers_never_fire_and_are_not_a_recovery():
    verdict = rules.evaluate_queue(queue(consumers=None), LIMITS, {})
    assert verdict.state == "ok"
    assert not verdict.known  # an open incident stays open
    assert "consumer" not in verdict.words


def test_conditions_say_unknown_when_figures_are_missing():
    assert rules.queue_conditions(queue(consumers=None, finished_in_window=None)) == {
        rules.NO_CONSUMER: None,
        rules.NO_PROGRESS: None,
    }
    assert rules.queue_conditions(queue(consumers=0, finished_in_window=0)) == {
        rules.NO_CONSUMER: True,
        rules.NO_PROGRESS: True,
    }
    assert rules.queue_conditions(queue(depth=0, consumers=0, finished_in_window=0)) == {
        rules.NO_CONSUMER: False,
        rules.NO_PROGRESS: False,
    }


def test_no_progress_words_and_cause():
    verdict = rules.evaluate_queue(
        queue(oldest_age=30.0, finished_in_window=0), LIMITS, {rules.NO_PROGRESS: 700.0}
    )
    assert verdict.words == (
        "oldest message waiting 30s, 342 waiting, 2 consumers, nothing finished in 10m00s"
    )
    assert "hung" in verdict.cause


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(None, "?"), (0.4, "0s"), (59.9, "59s"), (60, "1m00s"), (432.4, "7m12s"), (7380, "2h03m")],
)
def test_duration_words(seconds, words):
    assert rules.duration_words(seconds) == words


def test_tasks_over_their_limit_one_verdict_per_name():
    running = [
        RunningTask("a", "shop.report", "w1", runtime=700, limit=600),
        RunningTask("b", "shop.report", "w1", runtime=900, limit=600),
        RunningTask("c", "shop.report", "w2", runtime=100, limit=600),
        RunningTask("d", "shop.invoice", "w1", runtime=30, limit=20),
        RunningTask("e", "shop.sync", "w1", runtime=9999, limit=0),  # 0: no limit
    ]
    verdicts = {v.subject: v for v in rules.evaluate_tasks(running)}
    assert set(verdicts) == {"shop.report", "shop.invoice"}
    report = verdicts["shop.report"]
    assert report.words == "2 tasks running longer than 10m00s, longest 15m00s"
    assert [t["task_id"] for t in report.figures["tasks"]] == ["b", "a"]
    assert report.headline == "task shop.report running too long"


def test_worker_lost_needs_silence_and_unfinished_tasks():
    gone = rules.evaluate_worker("w1@h", 61.0, running=2, lost=0, limit=60)
    assert gone.firing and gone.words == "silent for 1m01s with 2 unfinished tasks"
    assert "LOST" in gone.cause
    assert not rules.evaluate_worker("w1@h", 30.0, running=2, lost=0, limit=60).firing
    assert not rules.evaluate_worker("w1@h", 600.0, running=0, lost=0, limit=60).firing
    assert rules.evaluate_worker("w1@h", 600.0, running=0, lost=3, limit=60).firing
    answering = rules.evaluate_worker("w1@h", None, running=2, lost=1, limit=60)
    assert answering.state == "ok" and answering.words == "heartbeats coming"
    assert not rules.evaluate_worker("w1@h", 600.0, running=2, lost=0, limit=0).firing


def test_monitor_lag():
    assert rules.evaluate_monitor(rules.StreamFigures(121.0, 5000), 120).firing
    assert not rules.evaluate_monitor(rules.StreamFigures(5.0, 10), 120).firing
    assert not rules.evaluate_monitor(rules.StreamFigures(None, None), 120).firing


def test_the_monitor_is_behind_once_the_stream_is_half_way_to_its_cap():
    def check(length: int, fraction: float = 0.5, trimmed: int = 0) -> rules.Verdict:
        stream = rules.StreamFigures(
            5.0, 0, length=length, cap=1000, trimmed=trimmed, trimmed_at=990.0
        )
        return rules.evaluate_monitor(stream, 120, fraction, now=1000.0)

    assert not check(499).firing
    verdict = check(500)  # before any entry is dropped: those go only past 1000
    assert verdict.firing and verdict.fired == ("stream_full",)
    assert "holds 500 entries, 50% of its cap" in verdict.words
    assert "TASKTRAIL_STREAM_MAX_ENTRIES" in verdict.cause
    assert not check(900, fraction=0).firing  # 0 turns the warning off
    dropped = check(1000, trimmed=1234)
    assert dropped.words.endswith("; 1,234 entries dropped by the cap, the latest 10s ago")
    assert dropped.figures["trimmed"] == 1234
    assert not rules.evaluate_monitor(rules.StreamFigures(5.0, 0, length=10**9), 120).firing
    assert rules.Thresholds.from_setting({"stream_full_fraction": 0.8}).stream_full_fraction == 0.8


def test_thresholds_from_the_setting_with_per_queue_overrides():
    thresholds = Thresholds.from_setting(
        {
            "queue": {"oldest_seconds": 120},
            "queues": {"reports": {"no_consumer_seconds": 5}, "bulk": {"enabled": False}},
            "tasks": {"shop.report": 1800},
            "remind_seconds": 60,
        }
    )
    assert thresholds.for_queue("emails").oldest_seconds == 120
    reports = thresholds.for_queue("reports")
    assert (reports.oldest_seconds, reports.no_consumer_seconds) == (120, 5)  # over the default
    assert thresholds.for_queue("bulk").enabled is False
    assert thresholds.tasks == {"shop.report": 1800.0}
    assert thresholds.remind_seconds == 60.0
    assert Thresholds.from_setting(None) == Thresholds()


@pytest.mark.parametrize(
    "raw", [{"oldest_seconds": 1}, {"queue": {"oldest": 1}}, {"queues": {"q": {"x": 1}}}]
)
def test_unknown_setting_keys_are_an_error(raw):
    with pytest.raises(ValueError, match="unknown keys"):
        Thresholds.from_setting(raw)
