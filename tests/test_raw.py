"""Camera RAW intake: recognised by content, decoded by LibRaw in a child process, within the limits."""

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.errors import CorruptImage, TooManyPixels
from forensics.formats import SNIFF_BYTES, ImageFormat, sniff_format, tiff_is_raw
from forensics.image import load_image
from forensics.methods.raw_consistency import RawConsistency
from service.ingest import judge
from tests.raw_support import simulated_sensor

SAMPLE_DNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "exiftool_test_images" / "images" / "DNG.dng"


@pytest.fixture(scope="module")
def dng() -> bytes:
    return simulated_sensor(256, 384, seed=3)


@pytest.mark.parametrize(
    "head",
    [
        b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(52),  # Canon CR2
        b"IIRO\x08\x00\x00\x00" + bytes(56),  # Olympus ORF
        b"IIU\x00\x08\x00\x00\x00" + bytes(56),  # Panasonic RW2
        b"FUJIFILMCCD-RAW 0201FF383501" + bytes(36),  # Fujifilm RAF
        b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + bytes(40),  # Canon CR3
    ],
)
def test_raw_signatures(head: bytes) -> None:
    assert sniff_format(head) is ImageFormat.RAW


def test_dng_is_told_from_tiff(dng: bytes) -> None:
    assert tiff_is_raw(dng)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "TIFF")
    assert not tiff_is_raw(buf.getvalue())
    assert load_image(buf.getvalue()).format is ImageFormat.TIFF


def test_dng_upload_is_judged_raw_from_its_head(dng: bytes) -> None:
    """Uploads are judged by the first SNIFF_BYTES only; a DNG's IFDs lie within them."""
    intake = judge("photo.dng", None, len(dng), "0" * 64, dng[:SNIFF_BYTES])
    assert intake.format is ImageFormat.RAW and intake.error_code is None


def test_dng_decodes_in_a_child(dng: bytes) -> None:
    image = load_image(dng, filename="sim.dng")
    assert image.format is ImageFormat.RAW
    assert image.raw is not None and image.raw.mosaic is not None
    assert image.raw.mosaic.shape == (256, 384)
    assert (image.width, image.height) == (192, 128)  # the half-size rendering
    assert image.raw.preview is not None and image.raw.preview.shape == (128, 192, 3)
    assert image.metadata is not None  # the TIFF structure's EXIF is read as for a TIFF


def test_pixel_limit_applies_before_unpacking(dng: bytes) -> None:
    with pytest.raises(TooManyPixels):
        load_image(dng, max_pixels=256 * 384 - 1)


def test_truncated_raw_is_a_clean_error(dng: bytes) -> None:
    """Cut inside the raw image's IFD: LibRaw refuses it, in its own process, and the intake says so."""
    with pytest.raises(CorruptImage, match="cannot be read"):
        load_image(dng[:300])


def test_raw_cut_inside_its_pixels_shows_its_preview(dng: bytes) -> None:
    """The headers and the preview are whole, the sensor data is not: the picture is the preview,
    and raw_consistency says why it cannot examine the sensor data."""
    image = load_image(dng[:-100])
    assert image.format is ImageFormat.RAW and image.raw is not None and image.raw.mosaic is None
    assert image.raw.preview is not None and image.rgb.shape == image.raw.preview.shape
    finding = RawConsistency().run(image)
    assert finding.score is None and "sensor data cannot be read" in finding.summary


def test_garbage_after_a_dng_header_is_a_clean_error() -> None:
    head = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 50706, 1, 4, 0x00000401) + bytes(4)
    with pytest.raises(CorruptImage):
        load_image(head + bytes(range(256)) * 8)


def test_decoder_crash_before_headers_is_a_corrupt_image(dng: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORENSICS_RAW_TEST_CRASH", "open")
    with pytest.raises(CorruptImage, match="crashed"):
        load_image(dng)


def test_decoder_crash_while_unpacking_is_an_error_finding(dng: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child segfaults after the headers: this process lives on, the preview is the picture, the method reports an error."""
    monkeypatch.setenv("FORENSICS_RAW_TEST_CRASH", "unpack")
    image = load_image(dng)
    assert image.raw is not None and image.raw.mosaic is None
    assert "crashed (SIGSEGV)" in (image.raw.problem or "")
    assert image.rgb.shape == (128, 192, 3)
    finding = RawConsistency().run(image)
    assert finding.status.value == "error" and "crashed" in finding.summary


@pytest.mark.skipif(not SAMPLE_DNG.exists(), reason="../shared/data is absent")
def test_real_sample_dng() -> None:
    image = load_image(SAMPLE_DNG.read_bytes(), filename=SAMPLE_DNG.name)
    assert image.format is ImageFormat.RAW
    finding = RawConsistency().run(image)
    assert finding.status.value in ("ok", "not_applicable", "error")
    assert np.isfinite(image.luma).all()
