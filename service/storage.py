"""One storage interface, two backends: S3 (boto3, any S3-compatible endpoint) and a local folder.

Keys are relative paths (``cases/<case>/originals/<sha256>``); the database stores keys,
never URLs. Originals are written byte for byte (they are evidence) and addressed by their
SHA-256 under the case's prefix, so a file uploaded twice in a case is stored once.
"""

import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from service.settings import Settings, get_settings


class StorageError(Exception):
    """A storage operation failed for a reason that may pass (network, throttling): retry it."""


class ObjectNotFound(KeyError):
    """No object under that key."""


def original_key(case_id: object, sha256: str) -> str:
    return f"cases/{case_id}/originals/{sha256}"


def image_prefix(case_id: object, image_id: object) -> str:
    return f"cases/{case_id}/images/{image_id}"


#: Files smaller than this go in one PUT; larger ones in parts (s3transfer's multipart threshold).
SINGLE_PUT_BYTES = 8 * 1024 * 1024


def _clean(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not key or "\x00" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return str(path)


class Storage(ABC):
    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (overwriting: writes are idempotent)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object (for streaming responses)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def copy(self, source: str, target: str) -> None:
        """Copy an object within the storage (server-side on S3)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; no error when it is absent."""

    def presigned_post(self, key: str, *, max_bytes: int, content_type: str | None = None) -> dict[str, Any] | None:
        """A presigned POST (``url``, ``fields``) limited to ``1..max_bytes`` bytes, or None without S3."""
        return None

    def start_multipart(self, key: str, size: int, part_bytes: int) -> tuple[str, list[dict[str, Any]]] | None:
        """A multipart upload of ``size`` bytes: its id and one presigned part URL per ``part_bytes``; None without S3."""
        return None

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble the uploaded parts ((number, ETag), ascending) into the object."""
        raise StorageError("this storage has no multipart uploads")

    @abstractmethod
    def presigned_url(self, key: str) -> str | None:
        """A short-lived URL a client may fetch directly, or None when the API serves the object."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageError` when the storage cannot be reached."""


class LocalStorage(Storage):
    """A folder; writes go to a temporary file first and are renamed into place atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _clean(key)

    def _atomic_write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the finished file ``path``: by a hard link where it lies on the same file system, so
        an upload's bytes are not written a second time (every caller hands over a file nobody
        writes again: an upload, a fetched original, a stored object), else by a copy. The object
        is made private to this user, as a copied one is."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        link = target.parent / f".part-{uuid.uuid4().hex}"
        try:
            os.link(path, link)
        except OSError:  # another file system, or no hard links there

            def write(out: BinaryIO) -> None:
                with path.open("rb") as src:
                    shutil.copyfileobj(src, out, 1024 * 1024)

            self._atomic_write(key, write)
            return
        try:
            os.chmod(link, 0o600)
            os.replace(link, target)
        except BaseException:
            link.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._atomic_write(key, lambda out: out.write(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # a folder is not an object
            raise ObjectNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def copy(self, source: str, target: str) -> None:
        src = self._path(source)
        if not src.is_file():
            raise ObjectNotFound(source)
        self.put_file(target, src, "application/octet-stream")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def presigned_url(self, key: str) -> str | None:
        return None

    def check(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            raise StorageError(f"storage folder {self.root} is not a writable folder")


class S3Storage(Storage):
    """An S3 bucket (AWS, MinIO, moto...) under an optional prefix."""

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_seconds = settings.presign_seconds
        def client(endpoint: str | None) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    signature_version="s3v4",
                    # no checksum of every body unless the operation requires one (about a tenth of
                    # a case creation's CPU in the API; the transfer is already TLS- or LAN-checked)
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )

        self.client = client(settings.s3_endpoint_url)
        # Presigning is local computation; URLs must name the endpoint the *clients* reach.
        public = settings.s3_public_endpoint_url
        self.presigner = client(public) if public and public != settings.s3_endpoint_url else self.client
        if settings.s3_create_bucket and not self._bucket_exists():
            self.client.create_bucket(Bucket=bucket)

    def _key(self, key: str) -> str:
        key = _clean(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except ClientError:
            return False

    def _call(self, fn: Callable[..., Any], *args: object, **kwargs: object) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(kwargs.get("Key")) from None
            raise StorageError(str(exc)) from exc
        except BotoCoreError as exc:
            raise StorageError(str(exc)) from exc

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        if path.stat().st_size < SINGLE_PUT_BYTES:
            # one PUT: upload_file's transfer manager starts threads and futures for every call,
            # which cost more CPU than the request itself for the photos most cases hold
            with path.open("rb") as body:
                self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=body, ContentType=content_type)
            return
        # upload_file streams from disk in parts, several at once, for large files.
        self._call(
            self.client.upload_file, str(path), self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
        )

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        response = self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return response["Body"].read()

    def open(self, key: str) -> BinaryIO:
        return self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"]

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except ObjectNotFound:
            return False

    def copy(self, source: str, target: str) -> None:
        # managed copy: server-side, multipart for objects over 5 GB
        self._call(self.client.copy, {"Bucket": self.bucket, "Key": self._key(source)}, self.bucket, self._key(target))

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def presigned_post(self, key: str, *, max_bytes: int, content_type: str | None = None) -> dict[str, Any] | None:
        conditions: list[Any] = [["content-length-range", 1, max_bytes]]
        fields: dict[str, str] = {}
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        return self.presigner.generate_presigned_post(
            self.bucket, self._key(key), Fields=fields or None, Conditions=conditions, ExpiresIn=self.presign_seconds
        )

    def start_multipart(self, key: str, size: int, part_bytes: int) -> tuple[str, list[dict[str, Any]]] | None:
        upload_id = self._call(self.client.create_multipart_upload, Bucket=self.bucket, Key=self._key(key))["UploadId"]
        parts = []
        for number, offset in enumerate(range(0, size, part_bytes), start=1):
            params = {"Bucket": self.bucket, "Key": self._key(key), "UploadId": upload_id, "PartNumber": number}
            url = self.presigner.generate_presigned_url("upload_part", Params=params, ExpiresIn=self.presign_seconds)
            parts.append({"part_number": number, "url": url, "size": min(part_bytes, size - offset)})
        return upload_id, parts

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        self._call(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    def presigned_url(self, key: str) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        return self.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=self.presign_seconds)

    def check(self) -> None:
        self._call(self.client.head_bucket, Bucket=self.bucket)


def make_storage(settings: Settings) -> Storage:
    url = urlparse(settings.storage_url)
    if url.scheme == "s3":
        return S3Storage(url.netloc, url.path, settings)
    return LocalStorage(Path(unquote(url.path)))


@lru_cache
def get_storage() -> Storage:
    return make_storage(get_settings())
