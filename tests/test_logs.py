"""Log formatting and the correlation context, without services (the plumbing is in test_platform_observability.py)."""

import json
import logging
import sys

import pytest

from service import correlation, logs


def _record(message: str = "hello %s", *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("broken")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("service.test", logging.WARNING, __file__, 1, message, args or ("world",), exc_info)
    for name, value in extra.items():
        setattr(record, name, value)
    logs.ContextFilter().filter(record)
    return record


def test_a_json_line_carries_the_bound_context_extras_and_the_exception() -> None:
    token = correlation.bind(request_id="abc-123", case_id="c1")
    try:
        entry = json.loads(logs.JsonFormatter().format(_record(exc=True, delivery="msg_1", color_message="\x1b[1mx")))
    finally:
        correlation.reset(token)
    assert entry["message"] == "hello world" and entry["level"] == "WARNING" and entry["logger"] == "service.test"
    assert entry["request_id"] == "abc-123" and entry["case_id"] == "c1" and "image_id" not in entry
    assert entry["delivery"] == "msg_1" and "color_message" not in entry
    assert entry["exception"].startswith("Traceback") and "ValueError: broken" in entry["exception"]
    assert entry["time"].endswith("Z")
    unbound = json.loads(logs.JsonFormatter().format(_record()))
    assert not {"request_id", "case_id", "image_id"} & set(unbound)


def test_a_text_line_names_the_bound_context() -> None:
    token = correlation.bind(request_id="r1", image_id="i1")
    try:
        line = logs.TextFormatter().format(_record())
    finally:
        correlation.reset(token)
    assert line.endswith("WARNING service.test [request_id=r1 image_id=i1] hello world")
    assert "[" not in logs.TextFormatter().format(_record())


@pytest.mark.parametrize(("value", "valid"), [("abc-123", True), ("trace:42/a=b", True), ("x" * 128, True),
                                              ("x" * 129, False), ("has space", False), ("tab\t", False), ("é", False), ("", False)])
def test_a_request_id_is_short_and_printable(value: str, valid: bool) -> None:
    assert correlation.valid_request_id(value) is valid


def test_task_headers_carry_the_context_and_drop_what_is_malformed() -> None:
    assert correlation.headers() == {}
    token = correlation.bind(request_id="abc-123", case_id=None)
    try:
        assert correlation.headers() == {"correlation": {"request_id": "abc-123"}}
    finally:
        correlation.reset(token)
    carried = {"correlation": {"request_id": "abc-123", "case_id": "has space", "image_id": 7, "other": "x"}}
    assert correlation.from_headers(carried) == {"request_id": "abc-123"}
    assert correlation.from_headers({"correlation": "abc"}) == {} and correlation.from_headers(None) == {}
    with pytest.raises(ValueError, match="unknown correlation fields"):
        correlation.bind(tenant="t")


def test_the_logging_config_takes_the_entry_point_s_level() -> None:
    assert logs.logging_config()["root"]["level"] == "INFO"
    assert logs.logging_config(logging.DEBUG)["root"]["level"] == "DEBUG"
    assert logs.logging_config("warning")["root"]["level"] == "WARNING"
