"""Real SMTP servers on free loopback ports: one (aiosmtpd) collecting what it receives, one that
accepts connections and never answers."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        body = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert body is not None and body.get_content_type() == content_type, content_type
        return str(body.get_content())


@dataclass
class MailCollector:
    """aiosmtpd handler: keeps every message; answers 451 while ``refuse`` is set."""

    received: list[Received] = field(default_factory=list)
    refuse: bool = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.handler = MailCollector()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def subjects(self) -> list[str]:
        return [r.subject for r in self.received]


class HangingSmtpServer:
    """Accepts connections and never says a word (not even the greeting): a client waits until its
    own timeout. ``stop()`` closes every connection, which ends the client's wait at once."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepted = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-smtp", daemon=True)

    def start(self) -> HangingSmtpServer:
        self._listener.listen(16)
        self._listener.settimeout(0.1)  # to notice stop(); a blocked accept() ignores close()
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._connections.append(conn)
            self._accepted.set()

    def wait_for_client(self, timeout: float) -> bool:
        """True once a client has connected."""
        return self._accepted.wait(timeout)

    def clients_waiting(self) -> int:
        """Connections whose client is still there and has sent nothing: each is a send in hand."""
        waiting = 0
        with self._lock:
            for conn in self._connections:
                try:
                    conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    waiting += 1  # open and silent
                except OSError:
                    pass  # reset by the client
        return waiting

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                conn.close()
