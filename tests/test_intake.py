"""Safe intake (``forensics.load_image``): hostile, truncated, oversized and unsupported input
gives a clean ``ForensicsError``; every supported format is recognised by its magic bytes."""

import csv
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, features

import forensics
from forensics import CorruptImage, ForensicsError, ImageFormat, TooManyPixels, UnsupportedFormat, load_image
from forensics.image import DEFAULT_MAX_PIXELS
from forensics.methods.integrity import IntegrityMethod
from service.settings import Settings
from tests.conftest import SHARED_DATA, jpeg_bytes, png_bytes

FUZZ = SHARED_DATA / "metadata_fuzz_corpus"


def _fuzz_files() -> list[str]:
    if not (FUZZ / "index.csv").exists():
        return []
    with (FUZZ / "index.csv").open(newline="") as fh:
        return [row["file"] for row in csv.DictReader(fh)]


FUZZ_FILES = _fuzz_files()


@pytest.mark.skipif(not FUZZ_FILES, reason=f"reference data {FUZZ} is absent")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FUZZ_FILES)
def test_fuzz_corpus_gives_clean_error_or_result(name: str) -> None:
    """Each malformed file ends in a ForensicsError or a full analysis; nothing else, no hang.

    Measured on the 102 files: 62 CorruptImage, 28 UnsupportedFormat, 12 analysed.
    """
    data = (FUZZ / name).read_bytes()
    start = time.perf_counter()
    try:
        report = forensics.analyze(data, filename=name.rsplit("/", 1)[-1])
    except ForensicsError as exc:
        assert str(exc)
        return
    assert report.findings and all(f.status.value in ("ok", "not_applicable", "error") for f in report.findings)
    assert not [f for f in report.findings if f.method in ("metadata", "integrity") and f.status.value == "error"]
    assert time.perf_counter() - start < 60


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` with a tiny IDAT: a bomb by declaration."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_declared_bomb_refused_before_decoding() -> None:
    start = time.perf_counter()
    # 900 MP: Pillow's own guard (twice its threshold) refuses it while opening the header.
    with pytest.raises(TooManyPixels, match="900000000 pixels|30000x30000"):
        load_image(_png_header_only(30000, 30000))
    # 25 MP against a 1 MP limit: our header check refuses it, naming the declared size.
    with pytest.raises(TooManyPixels, match="5000x5000"):
        load_image(_png_header_only(5000, 5000), max_pixels=1_000_000)
    assert time.perf_counter() - start < 0.5


def test_compressed_zero_png_refused_with_lower_limit() -> None:
    """A real, highly compressible all-zero PNG: fine at the default limit, refused at a lower one."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2000, 2000), np.uint8)).save(buf, format="PNG", optimize=False)
    data = buf.getvalue()
    assert len(data) < 20_000
    with pytest.raises(TooManyPixels, match="4,000,000"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data).width == 2000


def _zeros_png(width: int, height: int) -> bytes:
    """A gray PNG of zeros, written without an image in memory (one zlib stream of its rows)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1) * height, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_default_pixel_limit_accepts_its_size_and_refuses_one_row_more() -> None:
    """The default limit is the largest image analysed within 1.5 GB (bench/bench_limits.py):
    a file of exactly that many pixels decodes; one row more is refused before decoding, with
    an error that names the size and the limit."""
    width = 10_000
    height = DEFAULT_MAX_PIXELS // width
    assert width * height == DEFAULT_MAX_PIXELS == Settings().max_pixels
    start = time.perf_counter()
    with pytest.raises(TooManyPixels, match=f"{width}x{height + 1} = {width * (height + 1):,} pixels, more than the limit of {DEFAULT_MAX_PIXELS:,}"):
        load_image(_zeros_png(width, height + 1))
    assert time.perf_counter() - start < 2
    image = load_image(_zeros_png(width, height))
    assert (image.width, image.height) == (width, height) and not image.rgb.any()


def test_a_raised_limit_is_not_refused_by_pillows_guard() -> None:
    """An operator may raise the limit past the default: Pillow's own bomb guard stops only what
    no limit may allow, so a 60 MP header under a 64 MP limit reaches the decoder (here a
    truncated one) and is not called a bomb."""
    with pytest.raises(CorruptImage):
        load_image(_png_header_only(10_000, 6_000), max_pixels=64_000_000)
    with pytest.raises(TooManyPixels):
        load_image(_png_header_only(10_000, 6_000))


def test_byte_limit() -> None:
    with pytest.raises(forensics.FileTooLarge):
        load_image(b"\xff\xd8\xff" + bytes(2000), max_bytes=1000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_truncated_file_says_truncated(astronaut: np.ndarray, fmt: str, keep: float) -> None:
    data = jpeg_bytes(astronaut) if fmt == "JPEG" else png_bytes(astronaut)
    with pytest.raises(CorruptImage, match="truncated"):
        load_image(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is plain text and not an image\n",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40),
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(32),
    ],
    ids=["empty", "text", "pdf", "zip", "mp4"],
)
def test_unsupported_content(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        load_image(data, filename="upload.jpg")


def _encode(rgb: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("pil_format", "expected"),
    [
        ("JPEG", ImageFormat.JPEG),
        ("PNG", ImageFormat.PNG),
        ("TIFF", ImageFormat.TIFF),
        ("WEBP", ImageFormat.WEBP),
        ("BMP", ImageFormat.BMP),
        ("GIF", ImageFormat.GIF),
        ("AVIF", ImageFormat.AVIF),
    ],
)
def test_magic_bytes_detection(astronaut: np.ndarray, pil_format: str, expected: ImageFormat) -> None:
    if pil_format == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow build cannot write AVIF (built without libavif)")
    rgb = astronaut[:128, :96].copy()
    # The name lies on purpose: the format is judged by content only.
    image = load_image(_encode(rgb, pil_format), filename="misleading.dat")
    assert image.format is expected
    assert (image.width, image.height) == (96, 128) and image.rgb.shape == (128, 96, 3)


def test_magic_bytes_heif_real_file() -> None:
    path = SHARED_DATA / "exif_samples_ianare" / "heic" / "samplefilehub.heif"
    if not path.exists():
        pytest.skip(f"reference file {path} is absent")
    image = load_image(path.read_bytes(), filename="x.bin")
    assert image.format is ImageFormat.HEIF and image.rgb.ndim == 3


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256).astype(np.uint16)  # 0 .. 65535
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    image = load_image(buf.getvalue())
    gray = image.rgb[:, :, 0].astype(int)
    assert gray.max() == 255 and gray.min() == 0
    assert abs(gray[128, 0] - 128) <= 1  # 32768 -> 128, not clipped to 255
    assert len(np.unique(gray)) == 256


def test_jpeg_named_png_is_flagged_by_integrity(astronaut: np.ndarray) -> None:
    image = load_image(jpeg_bytes(astronaut), filename="screenshot.png")
    assert image.format is ImageFormat.JPEG
    finding = IntegrityMethod().run(image)
    assert "extension mismatch" in finding.label and "'.png'" in finding.summary
