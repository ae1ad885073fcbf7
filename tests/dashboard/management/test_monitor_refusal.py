"""The monitor refuses to start without the stream's URL, naming the variable to set."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_monitor_without_a_stream_url_names_the_variable(settings):
    settings.REDIS_URL = ""
    with pytest.raises(CommandError, match="set TASKTRAIL_RECORDER_URL"):
        call_command("monitor", "--drain")
