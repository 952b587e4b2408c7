"""Errors the service functions raise for the API to map to problems (:mod:`api.problems`).

Their own module, so that any service module can raise them without importing another
service module's queries (which is how :mod:`service.cases` and the webhooks once imported
each other).
"""


class NotFound(LookupError):
    """The resource does not exist, or belongs to another tenant (the two are indistinguishable: 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Refused(ValueError):
    """The request cannot be served as asked; ``code`` is the dossier's problem code (``NO_FILE``,
    ``QUOTA_EXCEEDED``, ...), ``status`` overrides the code's usual HTTP status, ``retry_after``
    (seconds) says when asking again may succeed."""

    def __init__(self, code: str, detail: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
