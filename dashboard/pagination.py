"""Keyset pagination over (first_seen_at, id), newest first: no OFFSET, no COUNT(*)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from dashboard.filters import FilterError, parse_number


@dataclass(frozen=True)
class Cursor:
    first_seen_at: dt.datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.first_seen_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        problem = FilterError(
            "The page link is not valid (bad “cursor”). Start from the first page."
        )
        if not token or len(token) > 200:
            raise problem
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, _, ident = raw.partition("|")
            parsed = dt.datetime.fromisoformat(when)
            number = parse_number(ident)
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC)
        except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
            raise problem from None
        if parsed.tzinfo is None or number is None:
            raise problem
        return cls(parsed, number)
