"""What the page says: problem codes in plain words, verdicts, numbers and dates for people.

The scripts read the same sentences from the page (``PROBLEMS`` is written into it), so an
error from the JSON API is shown in the words the server uses, never as raw JSON.
"""

from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError

#: The dossier's problem codes (api.problems.CODES) as a person reads them.
PROBLEMS: dict[str, str] = {
    "NO_FILE": "No file was chosen.",
    "EMPTY_FILENAME": "A file has no name.",
    "INVALID_FORMAT": "Not a picture the service reads (it takes JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF).",
    "VALIDATION_ERROR": "The picture is damaged or cut short and cannot be decoded.",
    "FILE_TOO_LARGE": "The file is larger than the service accepts.",
    "ANALYSIS_ERROR": "The picture could not be analysed.",
    "TOO_MANY_FILES": "Too many files for one case.",
    "BAD_REQUEST": "The service refused the request.",
    "NOT_FOUND": "It does not exist, or belongs to another organisation.",
    "METHOD_NOT_ALLOWED": "The service does not allow that here.",
    "UPLOAD_STATE": "The upload was not finished.",
    "UNAUTHORIZED": "You are signed out. Sign in again.",
    "CSRF_MISMATCH": "The page is out of date. Reload it and try again.",
    "RATE_LIMITED": "Too many requests in a minute. Wait a moment and try again.",
    "QUOTA_EXCEEDED": "Your organisation's quota of pictures for today is used up.",
    "IDEMPOTENCY_IN_FLIGHT": "The same request is already being handled.",
    "IDEMPOTENCY_MISMATCH": "The request was changed while it was being retried.",
    "UNSAFE_URL": "The address is refused: it must be a public http or https address.",
    "UNSAFE_ARCHIVE": "The archive is refused (damaged, or unsafe to unpack).",
    "FETCH_FAILED": "The picture could not be fetched from its address.",
    "UPLOAD_MISSING": "The upload did not arrive. Try again.",
    "DIRECT_UPLOAD_UNAVAILABLE": "Direct uploads are not available here.",
    "UNAVAILABLE": "The service is busy or partly down. Try again in a few seconds.",
    "INTERNAL_ERROR": "The service failed; the error was logged.",
    "NETWORK": "The service could not be reached. Check the connection and try again.",
}

VERDICTS = {
    "likely_manipulated": "Likely manipulated",
    "no_manipulation_detected": "No manipulation detected",
    "inconclusive": "Inconclusive",
}

STATUSES = {
    "queued": "Waiting",
    "running": "Analysing",
    "fusing": "Analysing",
    "completed": "Done",
    "failed": "Failed",
}


def problem(code: str | None) -> str:
    return PROBLEMS.get(code or "", "Something went wrong.")


def validation(exc: RequestValidationError) -> str:
    return "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in exc.errors())


def verdict(value: str | None) -> str:
    return VERDICTS.get(value or "", "Not scored")


def status(value: str | None) -> str:
    return STATUSES.get(value or "", value or "")


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def when(value: datetime | str | None) -> str:
    """A UTC time as a newsroom writes it (``2026-12-07 09:14 UTC``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(value: int | None) -> str:
    if value is None:
        return ""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} bytes"


def measure(value: Any) -> str:
    """A finding's measurement as short text: numbers rounded, lists and tables compacted."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        shown = ", ".join(measure(v) for v in value[:12])
        return shown + (f", … ({len(value)} in all)" if len(value) > 12 else "")
    if isinstance(value, dict):
        return "; ".join(f"{k}: {measure(v)}" for k, v in list(value.items())[:12])
    return "–" if value is None else str(value)


FILTERS = {"problem": problem, "verdict": verdict, "status": status, "score": score, "when": when, "size": size, "measure": measure}
