"""Signed stream entries: only holders of a key can write history the monitor accepts.

Anyone who can write to the stream's Redis can otherwise add entries the monitor takes as the
workers' own. With ``TASKTRAIL_EVENT_KEY`` set, every process that writes entries (the recorder,
the task catalog, heartbeats) adds a signature field ``s`` to each entry, and a monitor with the
same setting dead-letters entries that are unsigned or signed wrongly.

``TASKTRAIL_EVENT_KEY`` holds ``id:secret`` pairs, comma-separated: the first signs, every one
verifies, so a key is rotated by adding the new one to the monitors, then putting it first on the
workers, then removing the old one. Ids are 1-32 of ``A-Z a-z 0-9 . _ -``; secrets at least 16
characters, no comma (a ``:`` is allowed). Secrets are never logged or shown.

The signature is ``<key id>:<hex HMAC-SHA256>`` over a canonical encoding of the stream name and
every other field of the entry (names sorted, each name and value length-prefixed), so it covers
whatever fields an entry holds, fields added later included, and an entry cannot be moved to
another stream. It does not stop an entry signed earlier from being added again (a replay).

Imports no Django.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

SIGNATURE_FIELD: Final = b"s"
ENV_EVENT_KEY: Final = "TASKTRAIL_EVENT_KEY"
MIN_SECRET: Final = 16
MAX_KEYS: Final = 16
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,32}")
_DOMAIN: Final = b"tasktrail-entry-v1\n"


class SigningConfigError(ValueError):
    """``TASKTRAIL_EVENT_KEY`` cannot be used; the message never holds a secret."""


@dataclass(frozen=True)
class SigningKey:
    id: str
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:  # never the secret
        return f"SigningKey({self.id!r})"


def parse_keys(text: str | None, source: str = ENV_EVENT_KEY) -> tuple[SigningKey, ...]:
    """The keys in ``text`` (``id:secret,id:secret``), the signing one first; () when empty."""
    keys: list[SigningKey] = []
    for number, part in enumerate((text or "").split(","), 1):
        part = part.strip()
        if not part:
            continue
        key_id, colon, secret = part.partition(":")
        key_id, secret = key_id.strip(), secret.strip()
        if not colon or not _KEY_ID.fullmatch(key_id):
            raise SigningConfigError(
                f"{source}: key {number} is not id:secret with an id of 1-32 letters, digits, "
                "'.', '_' or '-'"
            )
        if len(secret) < MIN_SECRET:
            raise SigningConfigError(
                f"{source}: the secret of key {key_id!r} is shorter than {MIN_SECRET} characters"
            )
        if any(key.id == key_id for key in keys):
            raise SigningConfigError(f"{source}: key id {key_id!r} is given twice")
        keys.append(SigningKey(key_id, secret.encode("utf-8")))
    if len(keys) > MAX_KEYS:
        raise SigningConfigError(f"{source}: more than {MAX_KEYS} keys")
    return tuple(keys)


def as_sent(fields: Mapping[Any, Any]) -> dict[bytes, bytes]:
    """The fields as redis-py sends them (and the monitor reads them back): names and values as
    bytes; text as UTF-8, numbers as their repr, like redis-py's encoder."""
    return {_bytes(name): _bytes(value) for name, value in fields.items()}


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode("ascii")
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"a stream entry field cannot hold a {type(value).__name__}")


def _mac(fields: Mapping[bytes, bytes], secret: bytes, stream: str) -> str:
    digest = hmac.new(secret, _DOMAIN, hashlib.sha256)
    name = stream.encode("utf-8")
    digest.update(len(name).to_bytes(4, "big") + name)
    for key in sorted(fields):
        if key == SIGNATURE_FIELD:
            continue
        value = fields[key]
        digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(8, "big"))
        digest.update(value)
    return digest.hexdigest()


def sign(fields: Mapping[Any, Any], key: SigningKey, stream: str) -> dict[bytes, bytes]:
    """``fields`` as sent, with the signature field of ``key`` added."""
    sent = as_sent(fields)
    sent.pop(SIGNATURE_FIELD, None)
    sent[SIGNATURE_FIELD] = f"{key.id}:{_mac(sent, key.secret, stream)}".encode("ascii")
    return sent


def signed(
    fields: Mapping[Any, Any], keys: tuple[SigningKey, ...], stream: str
) -> Mapping[Any, Any]:
    """``fields`` signed with the first of ``keys``, or unchanged when there is none."""
    return sign(fields, keys[0], stream) if keys else fields


def verify(fields: Mapping[bytes, bytes], keys: tuple[SigningKey, ...], stream: str) -> str | None:
    """Why the entry's signature is not good for any of ``keys``, or None when it is."""
    raw = fields.get(SIGNATURE_FIELD)
    if raw is None:
        return "unsigned entry (the monitor requires TASKTRAIL_EVENT_KEY signatures)"
    key_id, colon, mac = bytes(raw[:200]).partition(b":")
    text_id = key_id.decode("ascii", "replace")
    if not colon or not _KEY_ID.fullmatch(text_id) or len(raw) > 200:
        return "malformed signature field"
    key = next((k for k in keys if k.id == text_id), None)
    if key is None:
        return f"signed with key id {text_id!r}, which the monitor does not have"
    if not hmac.compare_digest(mac, _mac(fields, key.secret, stream).encode("ascii")):
        return f"wrong signature for key id {text_id!r}"
    return None
