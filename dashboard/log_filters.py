"""Log records of failed requests, without secrets: a 500's message and traceback are formatted
here and passed through the same masking as the pages (dashboard.redaction.scrub_text)."""

from __future__ import annotations

import logging

from django.conf import settings

from dashboard.redaction import scrub_text


class ScrubSecrets(logging.Filter):
    """Formats the record's message and traceback now, masked, so no handler prints them raw."""

    def filter(self, record: logging.LogRecord) -> bool:
        keys = getattr(settings, "TASKTRAIL_REDACT_KEYS", ())
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = scrub_text(message, keys), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub_text(text, keys)
            record.exc_info = None  # the masked text above is what a formatter prints
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text, keys)
        return True
