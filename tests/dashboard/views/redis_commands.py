"""What the web process asks Redis during a request, as Redis itself saw it (MONITOR)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from django.conf import settings

MONITOR_WAIT_SECONDS = 10.0  # a deadline for the marker to come through, not a measured time


@dataclass(frozen=True)
class Command:
    name: str  # upper case, e.g. "GET"
    text: str  # the whole command line as MONITOR prints it
    client: str  # "address:port" of the connection that sent it


class CommandLog:
    """Commands run on this test's Redis database since the log was opened."""

    def __init__(self, monitor: redis.client.Monitor, db: int, marker: redis.Redis) -> None:
        self.monitor = monitor
        self.db = db
        self.marker = marker  # connected before MONITOR began, so its handshake is not logged
        self.marker_addr = str(marker.client_info()["addr"])

    def read(self) -> list[Command]:
        """Every command since the last read: a marker is sent on a connection of its own and the
        log is read up to it, so nothing the server ran before it is missed."""
        marker = f"tasktrail-test-marker-{uuid.uuid4().hex}"
        self.marker.echo(marker)
        commands = []
        while True:
            seen = self.monitor.next_command()
            client = f"{seen['client_address']}:{seen['client_port']}"
            if client == self.marker_addr:
                if marker in seen["command"]:
                    return commands
                continue
            if seen["db"] != self.db or seen["client_type"] != "tcp":
                continue  # other databases on a shared server; scripts are shown by their EVAL
            text = seen["command"]
            commands.append(Command(name=text.split(" ", 1)[0].upper(), text=text, client=client))


@contextmanager
def command_log() -> Iterator[CommandLog]:
    marker = redis.Redis.from_url(settings.REDIS_URL)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=MONITOR_WAIT_SECONDS)
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)
    try:
        log = CommandLog(client.monitor(), db, marker)
        with log.monitor:
            yield log
    finally:
        client.close()
        marker.close()


def connections(client: redis.Redis) -> set[str]:
    """Addresses of the connections now open on this test's database (the caller's excluded)."""
    db = str(client.connection_pool.connection_kwargs.get("db") or 0)
    own = client.client_id()
    return {
        c["addr"]
        for c in client.client_list()
        if str(c.get("db")) == db and int(c["id"]) != own and c.get("cmd") != "monitor"
    }
