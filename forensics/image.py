"""Safe intake: recognise, bound and decode an image once, for every method to share.

Order matters for safety: the byte limit, then the magic-byte format, then the header's
pixel count against the pixel limit, and only then the decode. Pillow's own
decompression-bomb warning is turned into :class:`TooManyPixels` as a second guard.
A :class:`DecodedImage` is immutable (its arrays are read-only): methods read it, none
mutates it, so methods may run in parallel threads over one instance. What the file says
about itself (EXIF, IPTC, XMP) is kept raw at decode time and parsed on first use, once,
into the :class:`~forensics.tags.FileMetadata` every method shares.
"""

import hashlib
import io
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import cv2
import jpeglib
import numpy as np
import pi_heif
from PIL import Image

from forensics.container import ContainerInfo, inspect_container
from forensics.errors import CorruptImage, FileTooLarge, ForensicsError, TooManyPixels
from forensics.formats import SNIFF_BYTES, ImageFormat, sniff_format, tiff_is_raw
from forensics.raw import RawData, decode_raw
from forensics.tags import FileMetadata, MetadataBlocks, find_blocks, read_metadata

#: The default pixel limit: the engine, and a worker process, analyse any file of this size
#: within 1.5 GB (``bench/bench_limits.py``; the costliest, a JPEG without chroma subsampling,
#: whose DCT coefficients are kept beside its pixels, peaked at 1.41 GB). 50 MP covers 48-50
#: MP phone cameras and 45 MP system cameras; larger images need a raised limit and more memory.
DEFAULT_MAX_PIXELS = 50_000_000
#: The most pixels any configured limit may allow: Pillow's own guard refuses the rest.
PILLOW_MAX_PIXELS = 200_000_000
#: Above this many pixels the work on one image runs one step at a time instead of in
#: parallel threads (here the DCT coefficients, then the pixels; the methods in
#: :mod:`forensics.pipeline`): the buffers of steps side by side would add up, past 1.5 GB
#: at the pixel limit.
PARALLEL_MAX_PIXELS = 24_000_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024

#: Parsing the metadata is cheap (milliseconds), so one lock for all images is enough to
#: make the methods that ask at the same moment, in parallel threads, parse it only once.
_METADATA_LOCK = threading.Lock()

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; the warning is an
# error here. Our own header check enforces the configured limit before any decode; Pillow's
# threshold sits above the default so that its guard does not refuse what a limit raised by
# the operator allows (it would otherwise warn at 89 MP), and still stops the rest.
Image.MAX_IMAGE_PIXELS = PILLOW_MAX_PIXELS

#: Formats whose file is itself the TIFF structure that holds the EXIF (a RAW file that is not
#: TIFF-structured, RAF or CR3, is then read as having none).
_TIFF_METADATA = frozenset({ImageFormat.TIFF, ImageFormat.RAW})

_PIL_FORMATS = {
    "JPEG": ImageFormat.JPEG,
    "MPO": ImageFormat.JPEG,
    "PNG": ImageFormat.PNG,
    "TIFF": ImageFormat.TIFF,
    "WEBP": ImageFormat.WEBP,
    "BMP": ImageFormat.BMP,
    "DIB": ImageFormat.BMP,
    "GIF": ImageFormat.GIF,
    "AVIF": ImageFormat.AVIF,
}


@dataclass(frozen=True, eq=False, slots=True)
class JpegData:
    """What the JPEG stream holds before the inverse DCT.

    ``quant_tables[k]`` is an 8x8 table in natural (row, column) order; component ``c``
    uses table ``quant_tables[table_of_component[c]]``; ``coefficients[c]`` has shape
    ``(block_rows, block_cols, 8, 8)`` and holds the *quantized* DCT coefficients (multiply
    by the table to dequantize). Component 0 is luminance.
    """

    quant_tables: tuple[np.ndarray, ...]
    table_of_component: tuple[int, ...]
    coefficients: tuple[np.ndarray, ...]
    sampling: tuple[tuple[int, int], ...]
    progressive: bool

    def table_for(self, component: int) -> np.ndarray:
        return self.quant_tables[self.table_of_component[component]]


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One image decoded once. ``rgb`` is uint8 (H, W, 3); ``luma`` float32 (H, W), BT.601, 0-255.

    Pixels are as stored (EXIF orientation is not applied), because block grids and sensor
    traces live in stored orientation.
    """

    data: bytes
    format: ImageFormat
    filename: str | None
    width: int
    height: int
    mode: str
    frames: int
    rgb: np.ndarray
    luma: np.ndarray
    alpha: np.ndarray | None
    jpeg: JpegData | None
    container: ContainerInfo
    text: Mapping[str, str] = field(default_factory=dict)
    icc_profile: bytes | None = None
    metadata_blocks: MetadataBlocks = field(default_factory=MetadataBlocks)
    #: A camera RAW file's sensor data and preview (:mod:`forensics.raw`); None for other formats.
    raw: RawData | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()

    @property
    def metadata(self) -> FileMetadata:
        """The file's EXIF, IPTC and XMP, parsed on first use and then shared (see :mod:`forensics.tags`)."""
        parsed = self.__dict__.get("_metadata")
        if parsed is None:
            with _METADATA_LOCK:
                parsed = self.__dict__.get("_metadata")
                if parsed is None:
                    parsed = read_metadata(self.metadata_blocks, self.data if self.format in _TIFF_METADATA else None)
                    # a cache, like cached_property's: it bypasses the frozen __setattr__
                    self.__dict__["_metadata"] = parsed
        return parsed

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def load_image(
    data: bytes,
    *,
    filename: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedImage:
    """Validate and decode ``data``; raise a :class:`ForensicsError` subclass when it cannot.

    Parameters
    ----------
    data
        The whole file, byte for byte.
    filename
        The name the file was given (kept for reporting; the format is judged by content).
    max_pixels, max_bytes
        Limits checked before decoding.
    """
    if len(data) > max_bytes:
        raise FileTooLarge(f"the file has {len(data):,} bytes, more than the limit of {max_bytes:,}")
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is ImageFormat.TIFF and tiff_is_raw(data):
        fmt = ImageFormat.RAW
    container = inspect_container(data, fmt)
    if fmt is ImageFormat.RAW:
        return _load_raw(data, filename, container, max_pixels)
    if fmt is ImageFormat.HEIF:
        pil, frames = _open_heif(data, max_pixels)
    else:
        pil, frames = _open_pillow(data, fmt, max_pixels)
    # libjpeg (through ctypes) and Pillow's decoder both release the GIL: read the DCT
    # coefficients in a second thread while the pixels are decoded. A large image's come
    # first, in this thread: libjpeg holds them twice while it reads them (up to 12 bytes a
    # pixel), and what another thread frees stays in that thread's malloc arena, on top of
    # the heap that a worker keeping freed memory holds (forensics.allocator; three 50 MP
    # decodes in a row in such a process: 1.39 GB with the thread, 1.02 GB without).
    large_jpeg = fmt is ImageFormat.JPEG and pil.width * pil.height > PARALLEL_MAX_PIXELS
    jpeg = _read_jpeg_coefficients(data) if large_jpeg else None
    with ThreadPoolExecutor(max_workers=1) as pool:
        coefficients = pool.submit(_read_jpeg_coefficients, data) if fmt is ImageFormat.JPEG and not large_jpeg else None
        pil = _decode(pil, fmt)
        rgb, alpha = _to_rgb8(pil)
        width, height, mode = pil.width, pil.height, pil.mode
        text = {str(k): v for k, v in pil.info.items() if isinstance(v, str)}
        icc = pil.info.get("icc_profile") or None
        # Pillow's copy of the pixels (4 bytes a pixel for RGB) goes before the luma is made:
        # at the pixel limit it is the largest buffer of the decode.
        pil.close()
        luma = luma_of(rgb)
        if coefficients is not None:
            jpeg = coefficients.result()
    blocks = find_blocks(pil, fmt, text, data)
    return DecodedImage(
        data=data,
        format=fmt,
        filename=filename,
        width=width,
        height=height,
        mode=mode,
        frames=frames,
        rgb=_frozen(rgb),
        luma=_frozen(luma),
        alpha=None if alpha is None else _frozen(alpha),
        jpeg=jpeg,
        container=container,
        text=MappingProxyType(text),
        icc_profile=icc if isinstance(icc, bytes) else None,
        metadata_blocks=blocks,
    )


def _load_raw(data: bytes, filename: str | None, container: ContainerInfo, max_pixels: int) -> DecodedImage:
    """A camera RAW file, decoded in a child process (:func:`forensics.raw.decode_raw`, which applies the pixel limit).

    The picture is LibRaw's half-size rendering of the sensor data (or the embedded preview
    when the sensor data cannot be read); ``raw`` holds the mosaic and the preview.
    """
    rgb, raw = decode_raw(data, max_pixels)
    height, width = rgb.shape[:2]
    _check_pixels(width, height, max_pixels)
    return DecodedImage(
        data=data,
        format=ImageFormat.RAW,
        filename=filename,
        width=width,
        height=height,
        mode="RGB",
        frames=1,
        rgb=_frozen(rgb),
        luma=_frozen(luma_of(rgb)),
        alpha=None,
        jpeg=None,
        container=container,
        raw=raw,
    )


def luma_of(rgb: np.ndarray) -> np.ndarray:
    """The luma plane of 8-bit RGB: OpenCV's integer BT.601 conversion, as float32 (0-255)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise TooManyPixels(
            f"the header declares {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} (possible decompression bomb)"
        )


_DECODE_ERRORS = (ValueError, SyntaxError, IndexError, TypeError, KeyError, EOFError, MemoryError, OSError)


def _decode_error(fmt: ImageFormat, exc: BaseException) -> CorruptImage:
    if "truncated" in str(exc):
        return CorruptImage(f"the {fmt.value} file is truncated: {exc}")
    return CorruptImage(f"the {fmt.value} file is corrupt and cannot be decoded: {exc}")


def _open_pillow(data: bytes, fmt: ImageFormat, max_pixels: int) -> tuple[Image.Image, int]:
    """Read the header only, and check the pixel limit before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(data))
            _check_pixels(pil.width, pil.height, max_pixels)
            found = _PIL_FORMATS.get(pil.format or "")
            if found is not fmt:
                raise CorruptImage(f"the content starts like {fmt.value} but decodes as {pil.format}")
            return pil, int(getattr(pil, "n_frames", 1))
    except ForensicsError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"refused by the decompression-bomb guard: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise _decode_error(fmt, exc) from exc


def _decode(pil: Image.Image, fmt: ImageFormat) -> Image.Image:
    """Decode the pixels of an opened image (its header has passed the pixel limit)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"refused by the decompression-bomb guard: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise _decode_error(fmt, exc) from exc
    return pil


def _open_heif(data: bytes, max_pixels: int) -> tuple[Image.Image, int]:
    try:
        heif = pi_heif.open_heif(data, convert_hdr_to_8bit=True)
        _check_pixels(heif.size[0], heif.size[1], max_pixels)
        pil = heif.to_pillow()
        # The copy of the EXIF that to_pillow makes says orientation 1 (libheif has applied the
        # file's rotation to the pixels); the metadata must say what the file says.
        pil.info.update({key: heif.info[key] for key in ("exif", "xmp") if heif.info.get(key)})
        return pil, len(heif)
    except ForensicsError:
        raise
    except (ValueError, RuntimeError, OSError, SyntaxError, KeyError, EOFError) as exc:
        raise CorruptImage(f"the heif file is corrupt and cannot be decoded: {exc}") from exc


_HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: Pixels converted at a time: the copies a conversion makes stay a few tens of MB whatever
#: the image's size (a whole-image ``numpy.asarray`` holds two more copies of the pixels).
_BAND_PIXELS = 4 * 1024 * 1024


def _bands(pil: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """(first row, Pillow image of the rows) for consecutive bands of ``pil``'s rows."""
    rows = max(1, _BAND_PIXELS // pil.width)
    for top in range(0, pil.height, rows):
        yield top, pil.crop((0, top, pil.width, min(pil.height, top + rows)))


def _to_rgb8(pil: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Bring any mode to 8-bit RGB; scale high-bit-depth modes instead of clipping them.

    Converted band by band into arrays allocated once, so that the decode's peak is Pillow's
    image plus the result, not the two or three whole-image copies a one-shot conversion makes.
    Every conversion used is per pixel, so bands give the same values as the whole image.
    """
    rgb = np.empty((pil.height, pil.width, 3), np.uint8)
    if pil.mode in _HIGH_BIT_DEPTH:
        top = 65535.0 if pil.mode != "F" else max(float(pil.getextrema()[1]), 1.0)
        for row, band in _bands(pil):
            arr = np.asarray(band, dtype=np.float64)
            rgb[row : row + band.height] = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[:, :, None]
        return rgb, None
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        alpha = np.empty((pil.height, pil.width), np.uint8)
        for row, band in _bands(pil):
            rgba = np.asarray(band.convert("RGBA"))
            rgb[row : row + band.height] = rgba[:, :, :3]
            alpha[row : row + band.height] = rgba[:, :, 3]
        return rgb, alpha
    for row, band in _bands(pil):
        rgb[row : row + band.height] = np.asarray(band if band.mode == "RGB" else band.convert("RGB"))
    return rgb, None


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _read_jpeg_coefficients(data: bytes) -> JpegData | None:
    """Read quantization tables and quantized DCT coefficients with libjpeg (via jpeglib).

    jpeglib reads from a path, so the bytes go through a private temporary file (in
    ``/dev/shm`` where it exists). Returns ``None`` when libjpeg cannot read the
    coefficients although Pillow decoded the pixels (methods then say so).
    """
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(suffix=".jpg", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        jpeg = jpeglib.read_dct(path)
        jpeg.load()
        planes = [p for p in (jpeg.Y, jpeg.Cb, jpeg.Cr) if p is not None]
        tables = tuple(_frozen(np.asarray(t, dtype=np.int32).copy()) for t in jpeg.qt)
        table_of = tuple(int(i) for i in np.asarray(jpeg.quant_tbl_no).ravel()[: len(planes)])
        sampling = tuple((int(a), int(b)) for a, b in np.asarray(jpeg.samp_factor).reshape(-1, 2)[: len(planes)])
        return JpegData(
            quant_tables=tables,
            table_of_component=table_of,
            coefficients=tuple(_frozen(np.asarray(p)) for p in planes),
            sampling=sampling,
            progressive=bool(jpeg.progressive_mode),
        )
    except (OSError, ValueError, RuntimeError, IndexError, TypeError):
        return None
    finally:
        os.unlink(path)
