"""The integrity method: extension vs content, truncation, appended data, MPO, corrupt chunks."""

import io
import json

import numpy as np
from PIL import Image

from forensics import load_image
from forensics.errors import ForensicsError
from forensics.finding import Status
from forensics.methods.integrity import IntegrityMethod
from tests.conftest import dataset, jpeg_bytes, png_bytes

METHOD = IntegrityMethod()


def _codes(finding) -> set[str]:
    return {r["code"] for r in finding.details["reasons"]}


def test_clean_jpeg_is_intact(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(jpeg_bytes(astronaut), filename="photo.JPG"))
    assert finding.status is Status.OK and finding.score < 10
    assert finding.label == "file structure intact" and not finding.details["reasons"]
    json.dumps(finding.to_dict())


def test_jpeg_named_png_is_flagged(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(jpeg_bytes(astronaut), filename="holiday.png"))
    assert "extension_mismatch" in _codes(finding)
    assert "extension mismatch" in finding.label
    assert "'.png'" in finding.summary and "JPEG" in finding.summary
    assert 20 < finding.score < 80  # clearly raised, but a misnamed file alone is not proof of tampering


def test_unknown_or_missing_suffix_is_not_a_mismatch(astronaut: np.ndarray) -> None:
    for name in ("upload.bin", "upload", None):
        finding = METHOD.run(load_image(jpeg_bytes(astronaut), filename=name))
        assert "extension_mismatch" not in _codes(finding), name


def test_appended_jpeg_is_flagged(astronaut: np.ndarray) -> None:
    data = jpeg_bytes(astronaut) + jpeg_bytes(astronaut[:64, :64].copy())
    finding = METHOD.run(load_image(data, filename="a.jpg"))
    assert "appended_jpeg" in _codes(finding) and finding.score >= 50
    assert finding.details["trailing"]["kind"] == "jpeg"


def test_mpo_second_image_is_not_flagged(astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    first = Image.fromarray(astronaut)
    first.save(buf, format="MPO", save_all=True, append_images=[Image.fromarray(astronaut[::-1].copy())])
    image = load_image(buf.getvalue(), filename="stereo.mpo")
    finding = METHOD.run(image)
    assert image.container.trailing_starts_with_jpeg
    assert finding.details["trailing"]["kind"] == "mpo" and not finding.details["reasons"]
    assert finding.score < 10


def test_appended_archive_and_garbage(astronaut: np.ndarray) -> None:
    zipped = jpeg_bytes(astronaut) + b"PK\x03\x04" + bytes(200)
    finding = METHOD.run(load_image(zipped, filename="a.jpg"))
    assert "appended_archive" in _codes(finding) and finding.score >= 50 and "ZIP" in finding.summary
    garbage = png_bytes(astronaut) + bytes(range(1, 200))
    finding = METHOD.run(load_image(garbage, filename="a.png"))
    assert "appended_unknown" in _codes(finding)
    padded = jpeg_bytes(astronaut) + b"\x00" * 100 + b"\xff\xff"
    assert "appended_padding" not in _codes(METHOD.run(load_image(padded, filename="a.jpg")))


def test_png_bad_crc_is_reported(astronaut: np.ndarray) -> None:
    data = bytearray(png_bytes(astronaut))
    # Corrupt the CRC of the first chunk (IHDR): bytes 29..32.
    data[29] ^= 0xFF
    try:
        image = load_image(bytes(data), filename="a.png")
    except ForensicsError:  # a decoder may refuse it outright; then the intake already reports it
        return
    finding = METHOD.run(image)
    assert "structure_problems" in _codes(finding) and "bad CRC" in finding.summary


def test_truncated_png_chunk_reported_when_decodable(astronaut: np.ndarray) -> None:
    """A PNG whose IEND is missing but whose pixels are all there decodes; integrity says truncated."""
    data = png_bytes(astronaut)
    image = load_image(data[:-12], filename="a.png")
    finding = METHOD.run(image)
    assert "truncated" in _codes(finding) and "truncated" in finding.summary


def test_multi_frame_gif_reported_without_points() -> None:
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 128, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    finding = METHOD.run(load_image(buf.getvalue(), filename="anim.gif"))
    assert finding.details["frames"] == 3 and finding.details["multi_frame"] and not finding.details["reasons"]


def test_reference_files_stay_low() -> None:
    """Camera and benchmark files: at most a metadata trailer, never above 50."""
    high = []
    checked = 0
    for name in ("exiftool_test_images", "casia2_samples", "mapo80_exif_spoof"):
        for sample in dataset(name):
            try:
                image = load_image(sample.path.read_bytes(), filename=sample.path.name)
            except ForensicsError:
                continue
            finding = METHOD.run(image)
            checked += 1
            if finding.score >= 50:
                high.append((sample.path.name, finding.summary))
    assert checked >= 130 and not high, (checked, high)


def test_metadata_trailer_recognised() -> None:
    for sample in dataset("exiftool_test_images"):
        if sample.path.name == "FotoStation.jpg":
            finding = METHOD.run(load_image(sample.path.read_bytes(), filename=sample.path.name))
            assert finding.details["trailing"]["kind"] == "metadata_trailer" and finding.score < 50
            return
    raise AssertionError("FotoStation.jpg missing from exiftool_test_images")


def test_gif_walk_finds_appended_archive() -> None:
    """A GIF with a ZIP after its trailer (the classic GIFAR polyglot) is flagged."""
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    finding = METHOD.run(load_image(buf.getvalue() + b"PK\x03\x04" + bytes(300), filename="cat.gif"))
    assert finding.details["container"]["checked"] and "appended_archive" in _codes(finding)
    assert finding.score >= 50
