"""The demo's banner and the client's installation state never print a password."""

from __future__ import annotations

import io
import threading

from celery import Celery

from dashboard.management.commands.demo import Command
from tasktrail import recorder

SECRET = "s3cr3t-broker-pw"


def test_the_demo_banner_masks_the_broker_password(settings, capsys):
    settings.REDIS_URL = f"redis://shop:{SECRET}@127.0.0.1:6379/0"
    command = Command(stdout=io.StringIO())
    command._out_lock, command._color = threading.Lock(), False  # as handle() sets them
    command.banner(8000, [], ready=False)
    printed = capsys.readouterr().out
    assert "broker: redis://shop:**@127.0.0.1:6379/0" in printed
    assert SECRET not in printed


def test_the_installation_state_never_shows_the_recorder_url_password():
    app = Celery("printed", set_as_current=False)
    state = recorder._Installation(app=app, overrides={"recorder_url": f"redis://:{SECRET}@h/0"})
    assert SECRET not in repr(state) and SECRET not in str(state)
