"""Builders for the security tests: hostile task values written through the real ingest path,
clients per role, and an HTML inspector that finds injected elements and attributes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from dashboard.services import api_token_create
from tasktrail.events import Event, decode_entry, encode_batch, make_event

MARK = "__pwned"  # every hostile script sets window.__pwned; it must never run
MB = 1024 * 1024

# One value per hostile kind. Each carries MARK so a test can follow it through every output.
HOSTILE: dict[str, str] = {
    "script": f"<script>window.{MARK}=1</script>",
    "attribute": f'"\'><img src=x onerror="window.{MARK}=1">',
    "javascript_url": f"javascript:window.{MARK}=1//",
    # undecodable bytes surface as lone surrogates (surrogateescape), plus a stray one
    "invalid_utf8": b"caf\xe9 \xff\xfe ".decode("utf-8", "surrogateescape") + f"\ud800 {MARK}",
    "control": f"a\x00b\x1b[31m\x07\x08\r\nSet-Cookie: {MARK}=1\x7f\x85\u2028",
    "huge": f"<b>{MARK}</b>" + "x" * MB + f"<script>window.{MARK}=1</script>",
    "rtl_override": f"\u202e{MARK}<i>gpj.exe\u202c\u2066\u200f",
}
KINDS = list(HOSTILE)

# Task ids and names come from Celery and are checked by the monitor: at most 255 characters, no
# NUL, valid UTF-8 (the recorder cannot pack a lone surrogate). Free text (input id, args, kwargs,
# error, traceback) is cleaned by the recorder instead: NUL and lone surrogates are replaced.
_ID_SAFE = {
    "invalid_utf8": f"caf\N{REPLACEMENT CHARACTER} \ufeff{MARK}",
    "control": f"a\x01b\x1b[31m\x07\x08\r\nSet-Cookie: {MARK}=1\x7f\x85\u2028",
}


def id_value(kind: str) -> str:
    """The hostile value as an id or a name can carry it (255 characters at most)."""
    return _ID_SAFE.get(kind, HOSTILE[kind])[:255]


def task_id_for(kind: str, tag: str) -> str:
    """A hostile task id, unique per kind and tag."""
    return f"{tag}-{kind}-" + id_value(kind)[: 255 - len(tag) - len(kind) - 2]


def ingest(events: Iterable[Event]) -> None:
    """As in production: the recorder's stream entry, decoded and validated by the monitor,
    then written by the monitor's writer. Fails when the monitor would reject an event."""
    decoded, rejected = decode_entry(encode_batch(list(events)))
    assert not rejected, [r.reason for r in rejected]
    write_events(decoded)


def _json_text(value: str) -> str:
    import json

    return json.dumps(value)  # as the recorder keeps arguments: JSON text


@dataclass
class HostileRow:
    kind: str
    task_id: str
    running_id: str
    value: str


def record_hostile(kind: str, *, t0: float | None = None) -> HostileRow:
    """One failed task (two attempts: a retry, then a failure) and one running task whose every
    task-controlled value is the hostile value of ``kind``."""
    t0 = time.time() - 120 if t0 is None else t0
    value, short = HOSTILE[kind], id_value(kind)
    task_id, running_id = task_id_for(kind, "f"), task_id_for(kind, "r")
    call = {
        "args": f'[{_json_text(value)}, {{"nested": [{_json_text(value)}]}}]',
        "kwargs": f'{{{_json_text(value)}: {_json_text(value)}, "note": {_json_text(value)}}}',
        "arg_names": "order_id,payload",
    }
    worker = f"w-{short}"[:255]
    ingest(
        [
            make_event("published", task_id, t0, name=short, queue=short, input_id=value,
                       retries=0, published_at=t0, **call),
            make_event("received", task_id, t0 + 0.1, name=short, queue=short, hostname=worker,
                       retries=0, published_at=t0),
            make_event("started", task_id, t0 + 0.2, retries=0, hostname=worker, pid=7),
            make_event("retried", task_id, t0 + 0.3, retries=0, hostname=worker, pid=7,
                       exc_type=value, exc_message=value, traceback=value),
            make_event("received", task_id, t0 + 0.4, hostname=worker, retries=1),
            make_event("started", task_id, t0 + 0.5, retries=1, hostname=worker, pid=8),
            make_event("failed", task_id, t0 + 0.6, retries=1, hostname=worker, pid=8,
                       exc_type=value, exc_message=value, traceback=value, runtime=0.1),
            make_event("published", running_id, t0, name=short, queue=short, input_id=value,
                       retries=0, published_at=t0, parent_id=task_id, root_id=task_id, **call),
            make_event("started", running_id, t0 + 1, retries=0, hostname=worker, pid=9),
        ]
    )  # fmt: skip
    return HostileRow(kind=kind, task_id=task_id, running_id=running_id, value=value)


@pytest.fixture
def hostile_rows(db: Any) -> dict[str, HostileRow]:
    rows = {kind: record_hostile(kind) for kind in KINDS}
    assert TaskRun.objects.count() == 2 * len(KINDS)
    return rows


def user_with_role(role: str, name: str | None = None) -> User:
    user = User.objects.create_user(name or f"{role}-{time.time_ns()}")
    user.groups.add(Group.objects.get(name=role))
    return user


def client_for(role: str, **kwargs: Any) -> Client:
    """anonymous, viewer, operator or admin (the groups migrate keeps); ``token``: a viewer's
    bearer API token and no session."""
    if role == "token":
        key = api_token_create(user=user_with_role("viewer"), name="security")
        return Client(headers={"Authorization": f"Bearer {key}"}, **kwargs)
    client = Client(**kwargs)
    if role != "anonymous":
        client.force_login(user_with_role(role))
    return client


@dataclass
class Inspected:
    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    inline_scripts: list[str] = field(default_factory=list)


class _Inspector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = Inspected()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.inline_scripts.append(data)


URL_ATTRIBUTES = ("href", "src", "action", "formaction", "hx-get", "hx-post", "data", "srcdoc")
# Elements the templates never emit: any of them in a page was injected.
FOREIGN_TAGS = {"img", "iframe", "object", "embed", "b", "i", "math", "base", "meta", "style"}


def injection_problems(html: str, *, full_page: bool) -> list[str]:
    """What in ``html`` was not put there by the templates: inline or foreign scripts, event
    handler attributes, javascript: URLs, foreign elements."""
    parser = _Inspector()
    parser.feed(html)
    parser.close()
    problems = [f"inline script: {s[:80]!r}" for s in parser.found.inline_scripts]
    head_tags = {"meta", "style"} if full_page else set()
    for tag, attrs in parser.found.tags:
        if tag == "script" and not (attrs.get("src") or "").startswith("/static/"):
            problems.append(f"script element {attrs}")
        if tag in FOREIGN_TAGS - head_tags:
            problems.append(f"foreign element <{tag}> {str(attrs)[:80]}")
        for name, value in attrs.items():
            if name.startswith("on"):
                problems.append(f"event handler attribute {name}= on <{tag}>")
            if name in URL_ATTRIBUTES and (value or "").strip().lower().startswith("javascript:"):
                problems.append(f"javascript: URL in {name}= on <{tag}>")
            if MARK in name:
                problems.append(f"attribute made of task data on <{tag}>: {name[:80]!r}")
    return problems
