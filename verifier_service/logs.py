"""Log output of `verirl serve`: human text, or one JSON object per line for log pipelines.

Why JSON: a trainer's operators grep a day of verifier logs by request id, peer or status
code; one object per line, with the fields of a record under their own keys, is what log
shippers (Loki, Elastic, Cloud Logging) index without a parser of ours. A record carries
its structured fields in `extra={"fields": {...}}` (the access log of interceptors.py
does); the text format shows only the message, so fields never change what text users see.

Nothing here knows of secrets: the rule "no token in a log" is kept by the callers, which
never put one in a message or a field (tests/test_access.py checks every line).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "LOG_FORMATS", "TEXT_FORMAT"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", **fields, "exc"?} on one line (control characters escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {"ts": f"{seconds}.{int(record.msecs):03d}Z", "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        out.update(record.__dict__.get("fields") or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _text() -> logging.Formatter:
    return logging.Formatter(TEXT_FORMAT)


LOG_FORMATS = {"text": _text, "json": JsonFormatter}


def configure_logging(fmt: str, level: str) -> None:
    """Root logging to stderr in format `fmt` ("text" or "json") at `level` ("INFO", ...)."""
    handler = logging.StreamHandler()
    handler.setFormatter(LOG_FORMATS[fmt]())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
