"""What every benchmark section shares: the services, run-scoped names, children, cleanup.

Every Redis key a run creates is named after the run (``bench:<run>:…`` or ``bench.<run>.…`` for
queues), registered here when it is handed out, and deleted by ``cleanup`` (after each measurement
and again in the driver's ``finally``). Nothing outside those names is touched.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.procs import Processes

# Kombu's Redis transport keeps a queue as a list plus one list per priority step, and a set of
# bindings per exchange, mirrored in a "permanent" set (Celery names a queue's exchange after the
# queue).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_BINDING_KINDS = ("binding", "binding_permanent")
# What the monitor and the recorder add next to a stream (cleanup also scans for the run's keys).
_STREAM_SUFFIXES = ("", ":dead", ":monitors", ":recorder")
# kombu (5.6+) also lists fanout exchanges (the event exchange Flower reads) in this shared sorted
# set: the run's members are removed, the set itself belongs to everyone on the broker.
_BINDING_DEADLINES = "_kombu.binding_deadlines"


@dataclass
class Bench:
    redis_url: str
    database_url: str
    log_dir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    procs: Processes = field(init=False)
    client: redis.Redis = field(init=False)
    _keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.procs = Processes(self.log_dir)
        self.client = redis.Redis.from_url(self.redis_url, socket_timeout=30)

    # -- names ------------------------------------------------------------------------------------

    def queue(self, *parts: object) -> str:
        name = ".".join(["bench", self.run_id, *map(str, parts)])
        self._keys.add(name)
        self._keys.update(f"{name}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)
        self._keys.update(f"_kombu.{kind}.{name}" for kind in _BINDING_KINDS)
        return name

    def key(self, *parts: object) -> str:
        name = ":".join(["bench", self.run_id, *map(str, parts)])
        self._keys.add(name)
        return name

    def stream(self, *parts: object) -> str:
        name = self.key(*parts)
        self._keys.update(name + suffix for suffix in _STREAM_SUFFIXES)
        return name

    def task_prefix(self, *parts: object) -> str:
        """Task ids of this run and measurement start with this (their rows are deleted by it)."""
        return "-".join(["bench", self.run_id, *map(str, parts)]) + "-"

    # -- children ---------------------------------------------------------------------------------

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REDIS_URL=self.redis_url,
            DATABASE_URL=self.database_url,
            CELERY_SKIP_CHECKS="1",
            PYTHONUNBUFFERED="1",
            BENCH_CONTROL_EXCHANGE=f"bench.{self.run_id}.control",
        )
        env.update(extra)
        return env

    # -- cleanup ----------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Delete every key handed out so far, and any other key named after the run (what the
        monitor or the recorder keep beside a stream, e.g. ``<stream>:alerts:…``)."""
        patterns = [f"bench:{self.run_id}:*", f"bench.{self.run_id}.*"]
        patterns += [
            f"_kombu.{kind}.{prefix}bench.{self.run_id}.*"
            for kind in _BINDING_KINDS
            for prefix in ("", "reply.")
        ]
        for pattern in patterns:
            self._keys.update(k.decode() for k in self.client.scan_iter(match=pattern, count=1000))
        if self._keys:
            self.client.delete(*sorted(self._keys))
            self._keys.clear()
        members = [
            member
            for prefix in ("", "reply.")
            for member, _ in self.client.zscan_iter(
                _BINDING_DEADLINES, match=f"{prefix}bench.{self.run_id}.*"
            )
        ]
        if members:
            self.client.zrem(_BINDING_DEADLINES, *members)

    def close(self) -> None:
        try:
            self.procs.stop_all()
        finally:
            self.cleanup()
            self.client.close()
