"""Domain exceptions of the forensics library.

Each carries a stable ``code`` (the dossier's error codes) so that the API can map any of
them to ``application/problem+json`` in one exception handler, and the CLI can print it.
"""


class ForensicsError(Exception):
    """Base class: the input could not be analysed. ``str(err)`` is meant for people."""

    code = "ANALYSIS_ERROR"


class UnsupportedFormat(ForensicsError):
    """The content is not one of the supported image formats (judged by magic bytes)."""

    code = "INVALID_FORMAT"


class CorruptImage(ForensicsError):
    """The content claims a supported format but cannot be decoded (corrupt or truncated)."""

    code = "VALIDATION_ERROR"


class TooManyPixels(ForensicsError):
    """The header declares more pixels than the configured limit (decompression bomb guard)."""

    code = "FILE_TOO_LARGE"


class FileTooLarge(ForensicsError):
    """The file has more bytes than the configured limit."""

    code = "FILE_TOO_LARGE"
