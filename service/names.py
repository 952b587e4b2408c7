"""Names and short texts from clients, made safe to store and show.

Postgres refuses NUL in text, and a column has a length; a file name also travels into
``Content-Disposition`` headers, logs and the web page. So a client's file name is kept as
readable as possible and stored in a safe form (control and format characters, including
NUL and the right-to-left override that disguises ``gpj.exe`` as ``exe.jpg``, become
U+FFFD; a long name is shortened in the middle, keeping its extension), while a label or
description with such characters is refused with a clear message: the client typed it and
can fix it. :data:`TEXT_PATTERN` is that rule as a regular expression, so the OpenAPI
schema states what the API accepts.
"""

import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

#: Longest stored file name (characters).
FILENAME_LIMIT = 255
#: Unicode categories never kept: control, format, surrogate, private use, unassigned.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _replace_unsafe(text: str) -> str:
    return "".join("\ufffd" if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def safe_filename(raw: str, limit: int = FILENAME_LIMIT) -> str:
    """The file's own name (no client-side folders), with unsafe characters replaced, at most ``limit`` characters."""
    name = PureWindowsPath(PurePosixPath(raw.replace("\x00", "\ufffd")).name).name
    name = _replace_unsafe(unicodedata.normalize("NFC", name)).strip()
    if len(name) <= limit:
        return name
    suffix = PurePosixPath(name).suffix
    suffix = suffix if len(suffix) <= 16 else ""
    return name[: limit - len(suffix) - 1] + "\u2026" + suffix


#: Labels, descriptions, URLs: no control characters but tab and newline (C0, DEL, C1).
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def unsafe_characters(text: str) -> list[str]:
    """The characters of ``text`` that :data:`TEXT_PATTERN` refuses, as ``U+XXXX``."""
    return sorted({f"U+{ord(ch):04X}" for ch in _CONTROL.findall(text)})
