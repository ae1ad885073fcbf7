"""The retention settings: days >= 0 (0 keeps forever); anything else stops the start-up naming
the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard.retention.policy import RetentionPolicy, parse_days, parse_seconds
from tests.dashboard.retention.rows import NOW
from tests.processes import ROOT


@pytest.mark.parametrize(
    ("raw", "days"), [(None, 14.0), ("", 14.0), ("7", 7.0), (" 0.5 ", 0.5), ("0", 0.0)]
)
def test_days_accepted(raw, days):
    assert parse_days("TASKTRAIL_RETENTION_DAYS", raw, 14) == days


@pytest.mark.parametrize("raw", ["-1", "two weeks", "nan", "inf", "1e9", "7d", "0x10"])
def test_days_refused_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match="TASKTRAIL_RETENTION_FAILED_DAYS"):
        parse_days("TASKTRAIL_RETENTION_FAILED_DAYS", raw, 30)


@pytest.mark.parametrize("raw", ["-5", "often", "nan"])
def test_seconds_refused_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match="TASKTRAIL_PRUNE_EVERY_SECONDS"):
        parse_seconds("TASKTRAIL_PRUNE_EVERY_SECONDS", raw, 300)


def test_zero_days_means_no_cutoff():
    cutoffs = RetentionPolicy(finished_days=0, failed_days=30, unfinished_days=0, audit_days=1)
    cut = cutoffs.cutoffs(NOW)
    assert cut.finished is None and cut.unfinished is None
    assert cut.failed is not None and cut.failed < cut.audit  # type: ignore[operator]
    assert cut.orphan_results is None  # a task kept forever keeps its result


def test_a_bad_setting_stops_manage_py_with_the_variable_named():
    env = {
        **os.environ,
        "TASKTRAIL_AUDIT_RETENTION_DAYS": "-3",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "TASKTRAIL_AUDIT_RETENTION_DAYS" in done.stderr and "'-3'" in done.stderr
