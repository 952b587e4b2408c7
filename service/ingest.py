"""Large batches: direct-to-storage upload slots, ZIP archives expanded server-side, and images
fetched by URL. Each source yields :class:`service.cases.Intake` objects, judged by content
(magic bytes; decoded later by the worker), never by name.

- **Upload slots.** The client asks for slots (file name, size), gets one presigned S3 POST
  per file whose policy limits the size (``content-length-range``), uploads, then names the
  slots in ``POST /v1/cases``; the server reads each object (SHA-256, size, magic bytes)
  and copies it server-side to the case. Without S3 (embedded mode) a slot's URL is a
  ``PUT`` on this API instead, with the same limits.
- **ZIP archives** are expanded entry by entry into temporary files with every size
  checked while writing (never trusting the sizes the archive declares): entries, total
  expanded bytes and each entry's compression ratio are capped (zip bombs); absolute
  paths, ``..``, drive letters, symbolic links and encrypted entries refuse the archive;
  directories are skipped; non-images become failed images.
- **URLs** are checked against the SSRF rules when the case is made (a refused one refuses
  the request); each is then fetched by the worker's prepare step, checked again, with size
  and time limits and no redirects, so that the API answers at once however many there are.
"""

import hashlib
import stat
import uuid
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from forensics.errors import UnsupportedFormat
from forensics.formats import SNIFF_BYTES, sniff_format
from service import netguard
from service.cases import Intake
from service.models import Upload, UploadStatus, utcnow
from service.names import safe_filename
from service.settings import Settings
from service.storage import ObjectNotFound, Storage, StorageError

FETCH_THREADS = 8
CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """The archive is refused as a whole (zip bomb, path tricks, not a ZIP)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def judge(filename: str, path: Path | None, size: int, sha256: str, head: bytes) -> Intake:
    """An intake judged by its magic bytes."""
    try:
        fmt = sniff_format(head)
    except UnsupportedFormat as exc:
        return Intake(filename, None, size, sha256, error_code=exc.code, error_detail=str(exc))
    return Intake(filename, path, size, sha256, format=fmt)


def _copy_limited(source: BinaryIO, out: BinaryIO | None, limit: int) -> tuple[int, str, bytes, bool]:
    """Copy at most ``limit`` bytes, hashing; returns (size, sha256, head, too_large)."""
    digest = hashlib.sha256()
    head = b""
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > limit:
            return size, "", head, True
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
    return size, digest.hexdigest(), head, False


# ------------------------------------------------------------------------------- upload slots


@dataclass(frozen=True)
class Slot:
    upload: Upload
    post: dict[str, Any] | None  # presigned POST (S3), or None: multipart (S3) or PUT through the API
    parts: list[dict[str, Any]] | None = None  # multipart: presigned part URLs


class UploadError(ValueError):
    """A multipart slot could not be completed: ``BAD_REQUEST`` (its parts), ``UPLOAD_STATE`` (the slot)."""

    def __init__(self, message: str, *, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.code = code


def create_slots(session: Session, storage: Storage, tenant_id: uuid.UUID, files: list[tuple[str, int]], settings: Settings) -> list[Slot]:
    """One upload slot per (file name, size); a size above the per-file limit is refused by the caller.

    With S3, files over ``FORENSICS_MULTIPART_THRESHOLD`` get a multipart slot (one presigned
    URL per part, completed by :func:`complete_multipart`), the others a presigned POST.
    """
    now = utcnow()
    slots = []
    for filename, size in files:
        upload_id = uuid.uuid4()
        upload = Upload(
            id=upload_id,
            tenant_id=tenant_id,
            filename=safe_filename(filename),
            storage_key=f"uploads/{tenant_id}/{upload_id}",
            max_bytes=size,
            status=UploadStatus.PENDING,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.upload_slot_seconds),
        )
        multipart = (
            storage.start_multipart(upload.storage_key, size, settings.multipart_part_bytes)
            if size > settings.multipart_threshold
            else None
        )
        if multipart is not None:
            upload.multipart_id = multipart[0]
            slots.append(Slot(upload, None, multipart[1]))
        else:
            slots.append(Slot(upload, storage.presigned_post(upload.storage_key, max_bytes=size)))
        session.add(upload)
    session.commit()
    return slots


def pending_upload(session: Session, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> Upload | None:
    upload = session.scalar(select(Upload).where(Upload.id == upload_id, Upload.tenant_id == tenant_id))
    if upload is None or upload.status != UploadStatus.PENDING or upload.expires_at < utcnow():
        return None
    return upload


def complete_multipart(
    session: Session, storage: Storage, tenant_id: uuid.UUID, upload_id: uuid.UUID, parts: list[tuple[int, str]]
) -> Upload | None:
    """Assemble a multipart slot's parts; None when the slot is unknown, used or expired."""
    upload = pending_upload(session, tenant_id, upload_id)
    if upload is None:
        return None
    if upload.multipart_id is None:
        raise UploadError("the slot is not a multipart upload, or it is completed already", code="UPLOAD_STATE")
    try:
        storage.complete_multipart(upload.storage_key, upload.multipart_id, sorted(parts))
    except (StorageError, ObjectNotFound) as exc:
        raise UploadError(f"the parts could not be assembled: {exc}") from None
    upload.multipart_id = None
    session.commit()
    return upload


def claim_uploads(
    session: Session, storage: Storage, tenant_id: uuid.UUID, upload_ids: list[uuid.UUID], settings: Settings
) -> tuple[list[Intake], dict[str, str], list[uuid.UUID]]:
    """Take the tenant's pending slots (each at most once) and judge their objects by content.

    Returns the intakes (in the order given), SHA-256 -> storage key of each accepted object,
    and the ids claimed (to :func:`release_uploads` if the case cannot be made). Slots that are
    unknown, another tenant's, used or expired become failed images (``UPLOAD_MISSING``).
    """
    now = utcnow()
    unique = list(dict.fromkeys(upload_ids))
    rows = {
        u.id: u
        for u in session.scalars(
            select(Upload).where(Upload.id.in_(unique), Upload.tenant_id == tenant_id, Upload.status == UploadStatus.PENDING)
        )
        if u.expires_at >= now
    }
    claimed = list(rows)
    if claimed:
        won = session.execute(
            update(Upload).where(Upload.id.in_(claimed), Upload.status == UploadStatus.PENDING).values(status=UploadStatus.USED)
        ).rowcount
        if won != len(claimed):  # a concurrent request took some: refuse this one cleanly
            session.rollback()
            raise ArchiveError("UPLOAD_MISSING", "some upload slots are being used by another request")
        session.commit()

    def read(upload_id: uuid.UUID) -> Intake:
        upload = rows.get(upload_id)
        if upload is None:
            return Intake("", None, 0, None, error_code="UPLOAD_MISSING", error_detail=f"no pending upload slot {upload_id}")
        limit = min(upload.max_bytes, settings.max_file_bytes)
        if upload.multipart_id is not None:
            detail = "the multipart upload was not completed (POST /v1/uploads/{id}/complete)"
            return Intake(upload.filename, None, 0, None, error_code="UPLOAD_MISSING", error_detail=detail)
        try:
            with storage.open(upload.storage_key) as stream:
                size, sha, head, too_large = _copy_limited(stream, None, limit)
        except (ObjectNotFound, StorageError):
            return Intake(upload.filename, None, 0, None, error_code="UPLOAD_MISSING", error_detail="nothing was uploaded to the slot")
        if too_large:
            return Intake(upload.filename, None, size, None, error_code="FILE_TOO_LARGE", error_detail=f"the object is larger than {limit:,} bytes")
        return judge(upload.filename, None, size, sha, head)

    seen: set[uuid.UUID] = set()
    intakes: list[Intake] = []
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        results = dict(zip(unique, pool.map(read, unique), strict=True))
    stored: dict[str, str] = {}
    for upload_id in upload_ids:
        intake = results[upload_id]
        if upload_id in seen:
            intake = Intake(intake.filename, None, 0, None, error_code="UPLOAD_MISSING", error_detail=f"upload slot {upload_id} named twice")
        seen.add(upload_id)
        if intake.error_code is None and intake.sha256 is not None:
            stored.setdefault(intake.sha256, rows[upload_id].storage_key)
        intakes.append(intake)
    return intakes, stored, claimed


def release_uploads(session: Session, upload_ids: Iterable[uuid.UUID]) -> None:
    ids = list(upload_ids)
    if ids:
        session.execute(update(Upload).where(Upload.id.in_(ids)).values(status=UploadStatus.PENDING))
        session.commit()


def delete_uploaded(storage: Storage, session: Session, upload_ids: Iterable[uuid.UUID]) -> None:
    """Remove the slots' objects once copied into a case (best effort: a leftover is only an orphan)."""
    keys = list(session.scalars(select(Upload.storage_key).where(Upload.id.in_(list(upload_ids)))))
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        list(pool.map(lambda k: _quiet_delete(storage, k), keys))


def _quiet_delete(storage: Storage, key: str) -> None:
    try:
        storage.delete(key)
    except (StorageError, ObjectNotFound):
        pass


# ------------------------------------------------------------------------------- ZIP archives


def _unsafe_name(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "a NUL byte"
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
        return "an absolute path or '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encryption"
    return None


def expand_zip(archive: Path, folder: Path, settings: Settings) -> list[Intake]:
    """Expand ``archive`` into ``folder`` (numbered files, names never used as paths); raises :class:`ArchiveError`."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError("UNSAFE_ARCHIVE", f"not a readable ZIP archive: {exc}") from None
    intakes: list[Intake] = []
    total = 0
    total_cap = min(settings.max_request_bytes, max(archive.stat().st_size, 1) * settings.max_archive_ratio)
    with zf:
        entries = [i for i in zf.infolist() if not i.is_dir()]
        if len(entries) > min(settings.max_archive_entries, settings.max_files_per_case):
            raise ArchiveError("TOO_MANY_FILES", f"the archive has {len(entries)} files, more than the limit")
        for info in entries:
            reason = _unsafe_name(info)
            if reason is not None:
                raise ArchiveError("UNSAFE_ARCHIVE", f"the entry {info.filename!r} has {reason}")
        for index, info in enumerate(entries):
            name = safe_filename(info.filename.replace("\\", "/"))
            # sizes are checked on the bytes actually expanded, never on the sizes the archive declares
            ratio_cap = max(info.compress_size, 1) * settings.max_archive_ratio + 65536
            bomb_bound = ratio_cap < settings.max_file_bytes
            path = folder / f"zip-{index:05d}"
            try:
                with zf.open(info) as source, path.open("wb") as out:
                    size, sha, head, too_large = _copy_limited(source, out, min(ratio_cap, settings.max_file_bytes))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
                path.unlink(missing_ok=True)
                detail = f"the entry cannot be read: {exc}"
                intakes.append(Intake(name, None, info.file_size, None, error_code="VALIDATION_ERROR", error_detail=detail))
                continue
            if too_large:
                path.unlink(missing_ok=True)
                if bomb_bound:
                    raise ArchiveError(
                        "UNSAFE_ARCHIVE", f"the entry {info.filename!r} expands more than {settings.max_archive_ratio}x: a zip bomb"
                    )
                detail = f"the file is larger than the limit of {settings.max_file_bytes:,} bytes"
                intakes.append(Intake(name, None, size, None, error_code="FILE_TOO_LARGE", error_detail=detail))
                continue
            total += size
            if total > total_cap:
                raise ArchiveError("UNSAFE_ARCHIVE", f"the archive expands to more than {total_cap:,} bytes: a zip bomb")
            intakes.append(judge(name, path, size, sha, head))
    if not intakes:
        raise ArchiveError("NO_FILE", "the archive holds no file")
    return intakes


# ------------------------------------------------------------------------------- URLs


def check_urls(urls: list[str], settings: Settings) -> list[netguard.Target]:
    """Every URL checked before any is fetched; raises :class:`netguard.UnsafeURL` naming the first refused."""
    targets = []
    for url in urls:
        try:
            targets.append(netguard.check_url(url, settings.webhook_allowlist))
        except netguard.UnsafeURL as exc:
            raise netguard.UnsafeURL(f"{url}: {exc}") from None
    return targets


def url_intakes(targets: list[netguard.Target]) -> list[Intake]:
    """One intake per checked URL, fetched later by the worker's prepare step (:func:`fetch_one`)."""
    return [Intake(_url_name(t), None, 0, None, source_url=t.url) for t in targets]


def _url_name(target: netguard.Target) -> str:
    return safe_filename(PurePosixPath(target.url.split("?", 1)[0].split("#", 1)[0]).name or target.host)


def fetch_one(target: netguard.Target, path: Path, settings: Settings, *, name: str) -> Intake:
    """Fetch a checked URL into ``path`` within the size and time limits; a failure is an intake with
    ``FETCH_FAILED``, a non-image one with ``INVALID_FORMAT``."""
    digest, head, size = hashlib.sha256(), b"", 0
    try:
        with netguard.fetch(target, max_bytes=settings.max_file_bytes, timeout=settings.fetch_timeout) as chunks, path.open("wb") as out:
            for chunk in chunks:
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except Exception as exc:  # noqa: BLE001 - any fetch failure (network, limits, disk) fails this image only
        path.unlink(missing_ok=True)
        detail = str(exc) if isinstance(exc, netguard.FetchError) else f"{type(exc).__name__}: {exc}"
        return Intake(name, None, 0, None, error_code="FETCH_FAILED", error_detail=f"{target.url}: {detail}")
    if size == 0:
        return Intake(name, None, 0, None, error_code="FETCH_FAILED", error_detail=f"{target.url}: empty body")
    return judge(name, path, size, digest.hexdigest(), head)
