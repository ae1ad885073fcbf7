"""The monitor's PostgreSQL taken away while tasks flow: its connections cut, or the server paused
(connections stay open, nothing answers). Workers finish every task meanwhile, events wait in the
stream, and once the database is back every row is correct.

Only the monitor's connections go through the proxy: the machine's PostgreSQL is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from django.db import connection

from tests.integration.tcp_proxy import TcpProxy
from tests.reliability.conftest import (
    INCLUDE,
    assert_exactly_one_correct_row_each,
    backlog,
    finished_rows,
    on_postgresql,
    progress,
    publish_ticks,
    report,
    ticks_done,
    wait_for,
)

pytestmark = [pytest.mark.integration, on_postgresql]


class PausableProxy(TcpProxy):
    """A ``TcpProxy`` that can also hold every byte in both directions, as a stopped server
    (SIGSTOP) would: connections stay open, queries hang, then carry on when resumed."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._flowing = threading.Event()
        self._flowing.set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["paused", "cut"])
@pytest.mark.parametrize(
    ("tasks", "seconds"),
    [
        pytest.param(500, 5, id="short"),
        pytest.param(5_000, 20, id="long", marks=pytest.mark.reliability),
    ],
)
def test_database_away_while_tasks_flow_loses_no_row(
    tasks, seconds, how, start_worker, start_monitor, redis_client
):
    db = connection.settings_dict
    proxy = PausableProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)).start()
    try:
        start_worker(name="dbaway", include=INCLUDE)
        monitor = start_monitor(
            database_url=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
            consumer="dbaway-monitor",
        )
        publish_ticks(1, "W")
        wait_for(lambda: finished_rows() == 1, 60, "the first row through the proxy")

        away = time.monotonic()
        proxy.pause() if how == "paused" else proxy.cut()
        publish_ticks(tasks, "W", first=1)
        # Workers run at full speed without the monitor's database: all done during the outage.
        wait_for(lambda: ticks_done(redis_client) == tasks + 1, 60 + tasks / 20, "the workers")
        done_after = time.monotonic() - away
        time.sleep(max(0.0, seconds - done_after))
        assert finished_rows() == 1  # nothing written while the database was away
        waiting = backlog(redis_client)
        assert waiting > 0  # the events wait in the stream
        outage = time.monotonic() - away

        proxy.resume() if how == "paused" else proxy.restore()
        back = time.monotonic()
        wait_for(
            lambda: finished_rows() == tasks + 1 and backlog(redis_client) == 0,
            120 + tasks / 50,
            "the rows after the database came back",
            explain=lambda: progress(redis_client, monitor),
        )
        caught_up = time.monotonic() - back
        assert_exactly_one_correct_row_each(redis_client, "W", tasks + 1)
        assert monitor.stop() == 0, monitor.log
        if how == "cut":
            assert "database unavailable" in monitor.log
    finally:
        proxy.resume()
        proxy.cut()
    report(
        f"database {how} for {outage:.1f}s: {tasks} tasks finished by the workers "
        f"{done_after:.1f}s into the outage, {waiting} entries waited in the stream, "
        f"rows complete {caught_up:.1f}s after it came back"
    )
