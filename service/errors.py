"""Errors the service functions raise for the API to map to problems (:mod:`api.problems`).

Their own module, so that any service module can raise them without importing another
service module's queries (which is how :mod:`service.cases` and the webhooks once imported
each other).
"""


class NotFound(LookupError):
    """The resource does not exist, or belongs to another tenant (the two are indistinguishable: 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
