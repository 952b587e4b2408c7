"""Stream a multipart upload of many files to temporary files, hashing as the bytes arrive.

Starlette's form parser keeps files under 1 MB in memory and parses the whole form before
the route runs; a batch of hundreds of photos needs constant memory and per-file limits
instead. Each file part goes to its own temporary file in 64 KB pieces while its SHA-256
is computed; a part beyond the per-file limit stops being written (that image is marked
``FILE_TOO_LARGE``, the others proceed) and the whole request beyond the request cap is
refused with 413.
"""

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.problems import Problem
from forensics.errors import UnsupportedFormat
from forensics.formats import SNIFF_BYTES, sniff_format
from service.cases import Intake
from service.names import safe_filename

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 100


@dataclass
class IncomingFile:
    """One file part: where it was written, its size and hash, and its first bytes for sniffing."""

    field: str
    filename: str
    path: Path
    size: int = 0
    head: bytes = b""
    too_large: bool = False
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass
class UploadForm:
    files: list[IncomingFile]
    fields: dict[str, str]
    folder: Path

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Collector:
    """python-multipart callbacks writing file parts to disk, text parts to memory."""

    def __init__(self, folder: Path, *, max_file_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.files: list[IncomingFile] = []
        self.fields: dict[str, str] = {}
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._content_type = b""
        self._file: IncomingFile | None = None
        self._out: BinaryIO | None = None
        self._name = ""
        self._text = bytearray()

    def on_part_begin(self) -> None:
        self._disposition = self._content_type = b""
        self._file = None
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        elif self._header_name.lower() == b"content-type":
            self._content_type = self._header_value.strip().lower()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise Problem("BAD_REQUEST", 'a multipart part has no "name" in its Content-Disposition')
        self._name = options[b"name"].decode("utf-8", "replace")
        if len(self.fields) >= MAX_FIELDS:
            raise Problem("BAD_REQUEST", f"more than {MAX_FIELDS} form fields")
        # RFC 7578: the filename is optional; a part with a non-text content type is a file all the same.
        if b"filename" in options or (self._content_type and not self._content_type.startswith(b"text/")):
            if len(self.files) >= self.max_files:
                raise Problem("TOO_MANY_FILES", f"more than {self.max_files} files in one request")
            path = self.folder / f"{len(self.files):05d}"
            filename = safe_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
            self._file = IncomingFile(self._name, filename, path)
            self._out = path.open("wb")
            self.files.append(self._file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        part = self._file
        if part is None:
            if len(self._text) + len(chunk) > MAX_FIELD_BYTES:
                raise Problem("BAD_REQUEST", f"the form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")
            self._text.extend(chunk)
            return
        if len(part.head) < SNIFF_BYTES:
            part.head += chunk[: SNIFF_BYTES - len(part.head)]
        part.size += len(chunk)
        if part.too_large:
            return
        if part.size > self.max_file_bytes:
            part.too_large = True
            self._close_file()
            part.path.unlink(missing_ok=True)
            return
        part._hash.update(chunk)
        assert self._out is not None
        self._out.write(chunk)

    def on_part_end(self) -> None:
        if self._file is None:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
        self._close_file()

    def _close_file(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def read_multipart(request: Request, *, max_file_bytes: int, max_request_bytes: int, max_files: int) -> UploadForm:
    """Parse ``request``'s multipart body to temporary files; the caller must :meth:`UploadForm.cleanup`."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise Problem("NO_FILE", "send the images as multipart/form-data")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_request_bytes:
        raise Problem("FILE_TOO_LARGE", f"the request has {int(declared):,} bytes, more than the cap of {max_request_bytes:,}")
    folder = Path(tempfile.mkdtemp(prefix="forensics-upload-"))
    collector = _Collector(folder, max_file_bytes=max_file_bytes, max_files=max_files)
    callbacks = {name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")}
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_request_bytes:
                raise Problem("FILE_TOO_LARGE", f"the request is larger than the cap of {max_request_bytes:,} bytes")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        collector._close_file()
        shutil.rmtree(folder, ignore_errors=True)
        raise Problem("BAD_REQUEST", f"malformed multipart body: {exc}") from None
    except BaseException:
        collector._close_file()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return UploadForm(collector.files, collector.fields, folder)


def to_intake(part: IncomingFile, max_file_bytes: int) -> Intake:
    """Judge one received file by what can be known without decoding: name, size, magic bytes."""
    if not part.filename.strip():
        return Intake(part.filename, None, part.size, None, error_code="EMPTY_FILENAME", error_detail="the file part has an empty file name")
    if part.too_large:
        detail = f"the file has {part.size:,} bytes, more than the limit of {max_file_bytes:,}"
        return Intake(part.filename, None, part.size, None, error_code="FILE_TOO_LARGE", error_detail=detail)
    try:
        fmt = sniff_format(part.head)
    except UnsupportedFormat as exc:
        return Intake(part.filename, None, part.size, part.sha256, error_code=exc.code, error_detail=str(exc))
    return Intake(part.filename, part.path, part.size, part.sha256, format=fmt)
