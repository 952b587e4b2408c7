"""Log records as one JSON object a line, or as readable text, each with its correlation fields.

Nothing here runs at import: the entry points apply :func:`logging_config` (the API through
uvicorn's ``--log-config`` with ``service/logging.json``, ``forensics serve`` through
``uvicorn.run``, the worker in Celery's ``setup_logging`` signal). ``FORENSICS_LOG_FORMAT``
chooses ``json`` (what log collectors parse: docker-compose sets it) or ``text`` (the
default, for a person reading a terminal or ``worker.log``).
"""

import json
import logging
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from service import correlation
from service.settings import get_settings

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is kept.
# (uvicorn's ``color_message`` repeats the message with terminal colours).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message", *correlation.FIELDS}


class ContextFilter(logging.Filter):
    """Puts the correlation fields bound now (request, case, image) on every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = correlation.current()
        for name in correlation.FIELDS:
            setattr(record, name, context.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the correlation
    fields that are set, ``extra=`` fields, and the exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in correlation.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request_id=... case_id=...] message``, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(context)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"{name}={getattr(record, name)}" for name in correlation.FIELDS if getattr(record, name, None) is not None]
        record.context = f"[{' '.join(fields)}] " if fields else ""
        return super().format(record)


def formatter() -> logging.Formatter:
    """The formatter ``FORENSICS_LOG_FORMAT`` names (the factory ``service/logging.json`` refers to)."""
    return JsonFormatter() if get_settings().log_format == "json" else TextFormatter()


def logging_config(level: str | int | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of every entry point: one handler on standard error, and
    uvicorn's loggers sent through it rather than their own (so their lines are formatted alike)."""
    config: dict[str, Any] = json.loads(resources.files("service").joinpath("logging.json").read_text())
    if level is not None:
        config["root"]["level"] = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return config
