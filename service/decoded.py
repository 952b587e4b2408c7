"""Decoded images shared by the worker processes of one machine.

An image's method tasks run anywhere, so without sharing every worker process that runs
one of them decodes the original again (about 0.3 s for a 12 MP JPEG, a tenth of the whole
analysis). The prepare task decodes once and writes the decoded planes (RGB, alpha, the
JPEG's quantized DCT coefficients) as ``.npy`` files into a folder on a memory-backed file
system (``/dev/shm`` where it exists); other processes map them read-only
(``numpy.load(mmap_mode="r")``), which costs a few milliseconds and no copy. The luma plane
is not shared: a reader derives it from the RGB with the engine's own function, in about
12 ms at 12 MP, where writing, mapping and removing its 48 MB cost about 40. Workers on
other machines, or after an eviction, simply decode again: the share is a cache, never a
source of truth. An entry is published by an atomic rename of a complete folder, removed
when its image is fused, and the oldest entries are evicted past ``decode_share_bytes``.
A JPEG's entry also holds its aligned double-quantization analysis
(:func:`forensics.jpeg_history.aligned_double_quantization`, about 0.2 s at 12 MP), which the
jpeg, resave and deep_scan methods all read, and every entry the CLIP embedding
(:func:`forensics.learn.clip_encoder.embed_image`, 0.1-0.5 s depending on the CPU), which the
ai_generated and recapture methods both read: each computed once, not once per method process.
"""

import dataclasses
import hashlib
import logging
import os
import pickle
import shutil
import stat
import tempfile
import time
import uuid
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from forensics import DecodedImage, jpeg_history, load_image
from forensics.image import JpegData, luma_of
from forensics.jpeg_history import aligned_double_quantization, prime
from forensics.learn import clip_encoder
from forensics.learn.runtime import ModelUnavailable
from service.methods import selected_methods
from service.models import Image
from service.settings import Settings, get_settings
from service.storage import Storage, get_storage

logger = logging.getLogger(__name__)

_PLANES = ("rgb", "alpha")
#: Bytes left free on the share's file system after an entry is written.
FREE_MARGIN = 64 * 1024**2
#: An entry this old belongs to an analysis that died (a fused image removes its own at once).
MAX_AGE_SECONDS = 3600
#: Bytes of decoded planes a process keeps, the image it is working on included (that one
#: whatever its size): two 24 MP images fit, an image near the 50 MP pixel limit stays alone,
#: so that a pool process holds at most one such image beside one method's working memory.
CACHE_BYTES = 640_000_000
#: The most a decoded image takes a pixel: RGB 3, luma 4, and alpha 1 or the coefficients of
#: a JPEG without chroma subsampling 6.
MAX_BYTES_PER_PIXEL = 13
_EMPTY = np.zeros((0, 0), np.uint8)


def default_folder() -> Path:
    """A private folder on ``/dev/shm`` (Linux) or in the temporary folder elsewhere."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return base / f"forensics-decoded-{os.getuid()}"


def _layout_version() -> str:
    """A digest of the decoded image's structure (its classes' fields) and of the code that makes
    the shared double-quantization analysis and embedding, part of every entry's name: a worker of
    another version, sharing the folder during a rolling upgrade or finding entries an earlier
    version (or another checkout) left, never reads an entry whose shape or analysis it does not know."""
    shapes = [(cls.__name__, [(f.name, str(f.type)) for f in dataclasses.fields(cls)]) for cls in (DecodedImage, JpegData)]
    code = b"".join(Path(module.__file__).read_bytes() for module in (jpeg_history, clip_encoder))
    analysis = hashlib.sha1(code, usedforsecurity=False).hexdigest()
    return hashlib.sha1(repr((shapes, analysis)).encode(), usedforsecurity=False).hexdigest()[:10]


LAYOUT = _layout_version()


def _arrays(decoded: DecodedImage) -> dict[str, np.ndarray]:
    """The arrays an entry holds, by file stem: the planes present and the JPEG's coefficients."""
    arrays = {p: getattr(decoded, p) for p in _PLANES if getattr(decoded, p) is not None}
    for i, coefficients in enumerate(decoded.jpeg.coefficients if decoded.jpeg else ()):
        arrays[f"coefficients_{i}"] = coefficients
    return arrays


def _double_quantization(decoded: DecodedImage) -> dict | None:
    """The JPEG's aligned double-quantization analysis, which three methods read (jpeg, resave,
    deep_scan): computed once by the process that shares the decode, instead of once in each
    method's process."""
    if decoded.jpeg is None or not decoded.jpeg.coefficients:
        return None
    try:
        return dict(aligned_double_quantization(decoded))
    except ValueError:
        return None


def _embedding(decoded: DecodedImage) -> np.ndarray | None:
    """The CLIP features that two methods read (ai_generated its embedding, recapture its class
    token): computed once by the process that shares the decode. None when the encoder is
    unavailable or fails: the methods then run it themselves and report what went wrong."""
    if min(decoded.width, decoded.height) < clip_encoder.MIN_SIDE:
        return None  # neither method reads it
    try:
        return clip_encoder.embed_image(decoded)
    except ModelUnavailable:
        return None
    except Exception:  # noqa: BLE001 - the share is a cache: the methods meet and report the same failure
        logger.warning("the CLIP embedding of %s was not shared", decoded.sha256[:12], exc_info=True)
        return None


def _nbytes(decoded: DecodedImage) -> int:
    """Bytes of the planes ``decoded`` holds in this process: its arrays and its luma."""
    return sum(a.nbytes for a in _arrays(decoded).values()) + decoded.luma.nbytes


def _private(folder: Path) -> bool:
    """True when ``folder`` (a real folder, not a link) belongs to this user and nobody else may
    write or read it: entries are unpickled, and ``/dev/shm`` is writable by every user, so a
    folder planted there by another user must never be trusted."""
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _mapped(path: Path) -> np.ndarray:
    """The array in ``path``, mapped read-only (a plain ndarray view, not the memmap subclass)."""
    return np.asarray(np.load(path, mmap_mode="r"))


class SharedDecodes:
    """Decoded images in ``folder`` (one sub-folder per SHA-256), at most ``max_bytes`` in all."""

    def __init__(self, folder: Path, max_bytes: int, *, embed: bool = True) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        #: Whether entries carry the CLIP embedding (False when no method that reads it runs).
        self.embed = embed
        if max_bytes:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(folder):
                logger.warning("not sharing decoded images: %s is not a folder private to this user", folder)
                self.max_bytes = 0

    def load(self, sha256: str) -> DecodedImage | None:
        """The shared decode of ``sha256``, or None (not shared, evicted, or being removed)."""
        entry = self.folder / f"{sha256}-{LAYOUT}"
        if not self.max_bytes or not entry.is_dir():
            return None
        try:
            shell: DecodedImage = pickle.loads((entry / "image.pickle").read_bytes())
            rgb = _mapped(entry / "rgb.npy")
            alpha = _mapped(entry / "alpha.npy") if (entry / "alpha.npy").exists() else None
            jpeg = shell.jpeg
            if jpeg is not None:
                count = len(list(entry.glob("coefficients_*.npy")))
                jpeg = replace(jpeg, coefficients=tuple(_mapped(entry / f"coefficients_{i}.npy") for i in range(count)))
            data = (entry / "data").read_bytes()
            luma = luma_of(rgb)
            luma.setflags(write=False)
            image = replace(shell, data=data, jpeg=jpeg, rgb=rgb, luma=luma, alpha=alpha, text=MappingProxyType(dict(shell.text)))
            adq = entry / "adq.pickle"
            if adq.exists():  # absent: not a JPEG with coefficients, or its analysis failed, and a method computes it
                prime(image, pickle.loads(adq.read_bytes()))
            clip = entry / "clip.npy"
            if clip.exists():  # absent: the encoder was unavailable or not wanted, and a method computes it
                clip_encoder.prime(image, np.load(clip))
        except FileNotFoundError:
            return None  # removed under us: the caller decodes
        except Exception:  # noqa: BLE001 - the share is a cache: an entry it cannot read is decoded again
            logger.warning("the shared decode %s could not be read; decoding the image again", entry.name, exc_info=True)
            return None
        return image

    def save(self, decoded: DecodedImage) -> None:
        """Publish ``decoded`` (a complete folder appears at once, or nothing)."""
        arrays = _arrays(decoded)
        size = sum(a.nbytes for a in arrays.values()) + len(decoded.data)
        if not self.max_bytes or size > self.max_bytes or (self.folder / f"{decoded.sha256}-{LAYOUT}").is_dir():
            return
        self._evict(self.max_bytes - size)
        if shutil.disk_usage(self.folder).free < size + FREE_MARGIN:
            return  # a small /dev/shm (Docker's default is 64 MB) is never filled: others need it too
        staging = self.folder / f".{decoded.sha256}.{uuid.uuid4().hex}"
        try:
            staging.mkdir(mode=0o700)
            for stem, array in arrays.items():
                np.save(staging / f"{stem}.npy", array)
            jpeg = None if decoded.jpeg is None else replace(decoded.jpeg, coefficients=())
            (staging / "data").write_bytes(decoded.data)
            shell = replace(decoded, data=b"", rgb=_EMPTY, luma=_EMPTY, alpha=None, jpeg=jpeg, text=dict(decoded.text))
            (staging / "image.pickle").write_bytes(pickle.dumps(shell, protocol=pickle.HIGHEST_PROTOCOL))
            if (adq := _double_quantization(decoded)) is not None:
                (staging / "adq.pickle").write_bytes(pickle.dumps(adq, protocol=pickle.HIGHEST_PROTOCOL))
            if self.embed and (embedding := _embedding(decoded)) is not None:
                np.save(staging / "clip.npy", embedding)
            staging.rename(self.folder / f"{decoded.sha256}-{LAYOUT}")
        except OSError as exc:  # full, or another process published it first: the share is only a cache
            logger.debug("decoded image %s not shared: %s", decoded.sha256[:12], exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def discard(self, sha256: str) -> None:
        """Remove an entry (its image is fused); processes that mapped it keep their mapping."""
        shutil.rmtree(self.folder / f"{sha256}-{LAYOUT}", ignore_errors=True)

    def _evict(self, budget: int) -> None:
        """Remove entries older than MAX_AGE_SECONDS (their image's analysis died), then the oldest
        until the others fit in ``budget`` bytes."""
        entries = []
        expired = time.time() - MAX_AGE_SECONDS
        for entry in self.folder.iterdir():
            if entry.name.startswith("."):
                continue  # another process's entry being written
            try:
                files = list(entry.iterdir()) if entry.is_dir() else []
                entries.append((entry.stat().st_mtime, sum(f.stat().st_size for f in files), entry))
            except OSError:
                continue
        total = sum(size for _, size, _ in entries)
        for mtime, size, entry in sorted(entries, key=lambda e: e[0]):
            if total <= budget and mtime >= expired:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size


class DecodeCache:
    """Decoded images for this process: its last few, then the machine's shared ones, then a decode.

    The per-method tasks of one image thus decode it once per machine, not once per process.
    The process keeps its last ``decode_cache_size`` images while they fit in
    :data:`CACHE_BYTES`; older ones go *before* a new one is mapped or decoded, so that a large
    image never meets another in memory.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.size = settings.decode_cache_size
        self.shared = SharedDecodes(
            settings.decode_share_folder or default_folder(),
            settings.decode_share_bytes,
            embed=any(method.reads_clip_embedding for method in selected_methods(settings)),
        )
        self._items: OrderedDict[str, DecodedImage] = OrderedDict()

    def get(self, image: Image, storage: Storage) -> DecodedImage:
        assert image.sha256 is not None and image.storage_key is not None
        decoded = self._items.get(image.sha256)
        if decoded is None:
            self._make_room(image)
            decoded = self.shared.load(image.sha256)
        if decoded is not None and decoded.filename != image.filename:
            # keyed by content: the same bytes uploaded under another name keep their own name
            # (integrity compares the name's extension with the real format)
            decoded = replace(decoded, filename=image.filename)
        if decoded is None:
            start = time.perf_counter()
            data = storage.get_bytes(image.storage_key)
            decoded = load_image(
                data, filename=image.filename, max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes
            )
            logger.info("decoded %s (%.1f MP) in %.2f s", image.sha256[:12], decoded.megapixels, time.perf_counter() - start)
            self.shared.save(decoded)
        self._items[image.sha256] = decoded
        self._items.move_to_end(image.sha256)
        return decoded

    def _make_room(self, image: Image) -> None:
        """Drop the oldest decodes until ``image`` (at most :data:`MAX_BYTES_PER_PIXEL` a pixel)
        fits beside the rest; all of them when its size is not known yet (before its prepare)."""
        if image.width and image.height:
            needed = image.width * image.height * MAX_BYTES_PER_PIXEL
        else:
            needed = CACHE_BYTES + 1
        while self._items and (len(self._items) >= self.size or sum(map(_nbytes, self._items.values())) + needed > CACHE_BYTES):
            self._items.popitem(last=False)

    def discard(self, sha256: str) -> None:
        self._items.pop(sha256, None)
        self.shared.discard(sha256)


_cache: DecodeCache | None = None


def decoded(image: Image) -> DecodedImage:
    """``image``'s decoded original, decoded at most once per machine while its analysis runs."""
    global _cache
    if _cache is None:
        _cache = DecodeCache(get_settings())
    return _cache.get(image, get_storage())


def release(image: Image) -> None:
    """Forget ``image``'s decode once nothing of its analysis needs it any more."""
    if _cache is not None and image.sha256 is not None:
        _cache.discard(image.sha256)
