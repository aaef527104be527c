"""Structured logs: one JSON object per line for aggregators, readable lines on a terminal."""

from __future__ import annotations

import json
import logging
import sys
import time

EVENT_FIELDS = "event_fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        out.update(getattr(record, EVENT_FIELDS, {}) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, EVENT_FIELDS, {}) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.getMessage()} {extra}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields) -> None:
    """Log a named event with fields (`backfill_start`, `backfill_progress`, ...)."""
    logger.log(level, event, extra={"event": event, EVENT_FIELDS: fields})


def configure(json_lines: bool | None = None, level: int = logging.INFO, stream=None) -> None:
    """JSON when asked or when not on a terminal; idempotent."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_backfill", False):
            root.removeHandler(h)
    handler._backfill = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
