"""The correlation id and the case and image a piece of work belongs to, as context.

One request's id follows it into the tasks it causes and their own tasks (prepare, the
methods, the join, the webhooks): the API binds it from ``X-Request-ID``, every published
task carries the context in a message header (:func:`headers`), and the worker binds it
again around the task. Log records read it through :class:`service.logs.ContextFilter`.

A :class:`~contextvars.ContextVar` because the API serves concurrent requests in one event
loop and hands sync routes to threads (which copy the context), and a worker's pool
process runs one task after another in the same thread (so the binding is undone after each).
"""

import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

#: The HTTP header that carries the id in and out.
REQUEST_ID_HEADER = "X-Request-ID"
#: The task message header that carries the context (a dict of the fields below).
TASK_HEADER = "correlation"
FIELDS = ("request_id", "case_id", "image_id")

# Short and printable (visible ASCII, no spaces): safe in a log line and in a response header.
_VALID = re.compile(r"[\x21-\x7e]{1,128}")

_context: ContextVar[Mapping[str, str] | None] = ContextVar("correlation", default=None)


def valid_request_id(value: str | None) -> bool:
    """True for an id a client may choose: 1 to 128 visible ASCII characters."""
    return value is not None and _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current() -> Mapping[str, str]:
    """The fields bound now (absent ones are left out)."""
    return _context.get() or {}


def bind(**fields: object) -> Token[Mapping[str, str] | None]:
    """Add ``fields`` (``None`` values are skipped) to the context; :func:`reset` with the token undoes it."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown correlation fields {sorted(unknown)}; known: {FIELDS}")
    added = {name: str(value) for name, value in fields.items() if value is not None}
    return _context.set({**current(), **added})


def reset(token: Token[Mapping[str, str] | None]) -> None:
    _context.reset(token)


def headers() -> dict[str, Any]:
    """Message headers of a task published now: the context, so the worker can bind it again."""
    context = current()
    return {TASK_HEADER: dict(context)} if context else {}


def from_headers(message_headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The context a task message carries (unknown or malformed fields are dropped)."""
    carried = (message_headers or {}).get(TASK_HEADER)
    if not isinstance(carried, Mapping):
        return {}
    return {name: str(carried[name]) for name in FIELDS if isinstance(carried.get(name), str) and valid_request_id(carried[name])}
