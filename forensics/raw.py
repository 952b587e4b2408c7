"""Decode a camera RAW file in a child process, bounded in time, memory and pixels.

LibRaw (through rawpy) reads every maker's format, and raw parsers have a long history of
crashes on malformed files. So the decode never runs in the calling process (a worker, the
engine): :mod:`forensics.raw_child` runs it as a separate Python process with an address-space
limit, and this module waits for it under a timeout. A crash (a signal), a timeout or an
exhausted memory bound becomes a :class:`~forensics.errors.CorruptImage` or, when the file's
headers and preview were read before the sensor data failed, a :class:`RawData` whose
``problem`` says what failed (the ``raw_consistency`` method reports it as an error finding).
The worker itself never goes down with the decoder.

Limits apply before decoding: the byte limit before the child starts (:func:`forensics.image.load_image`),
the pixel limit in the child after LibRaw has read the headers (the sensor size) and before
it unpacks the sensor data, and again here on the preview's header before Pillow decodes it.

The picture the other methods see (``DecodedImage.rgb``) is LibRaw's rendering of the sensor
data at half size (each 2x2 colour-filter cell one pixel, camera white balance, no
demosaicing interpolation), or the embedded preview when the sensor data cannot be read.
"""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from forensics.errors import CorruptImage, TooManyPixels

#: Seconds the child may take; a 24 MP DNG takes well under one.
RAW_TIMEOUT_S = 60.0
#: The child's address-space limit: a fixed allowance for the interpreter, numpy and LibRaw,
#: plus this many bytes per allowed pixel (the mosaic, LibRaw's 4-channel image, the copies).
RAW_MEMORY_BASE = 1024 * 1024 * 1024
RAW_MEMORY_PER_PIXEL = 24
_CHILD = Path(__file__).with_name("raw_child.py")


@dataclass(frozen=True, eq=False)
class RawData:
    """What the sensor data of a RAW file holds, for the methods that look at it.

    ``mosaic`` is the visible sensor area, uint16, one value per photosite (None when it could
    not be read: ``problem`` says why); ``pattern`` the colour-filter repeat pattern of indices
    into ``color_desc`` (e.g. ``RGBG``, where the two G are the two green sites of a Bayer cell);
    ``preview`` the embedded preview as uint8 RGB (None when there is none: ``preview_problem``).
    """

    mosaic: np.ndarray | None
    pattern: np.ndarray
    color_desc: str
    black_levels: tuple[int, ...]
    white_level: int
    camera_whitebalance: tuple[float, ...]
    sensor_size: tuple[int, int]
    preview: np.ndarray | None
    preview_problem: str | None = None
    problem: str | None = None


def _memory_bound(max_pixels: int) -> int:
    return RAW_MEMORY_BASE + RAW_MEMORY_PER_PIXEL * max_pixels


def decode_raw(data: bytes, max_pixels: int, timeout_s: float = RAW_TIMEOUT_S) -> tuple[np.ndarray, RawData]:
    """(8-bit RGB picture for the methods, :class:`RawData`) of the RAW file ``data``.

    Raises :class:`TooManyPixels` when the sensor or preview is over ``max_pixels`` and
    :class:`CorruptImage` when nothing could be read (including a decoder crash or timeout
    before the headers were read).
    """
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="raw-", dir=tmpdir) as folder:
        out = str(Path(folder) / "decoded")
        failure = _run_child(data, out, max_pixels, timeout_s)
        head_path, raw_path = Path(out + ".head.npz"), Path(out + ".raw.npz")
        if not head_path.exists():
            raise CorruptImage(failure or "the RAW decoder wrote nothing")
        with np.load(head_path) as head_file:
            head = json.loads(str(head_file["head"]))
            preview_bytes = head_file["preview"]
            pattern = head_file["pattern"].astype(np.int8)
        preview, preview_problem = _preview(head, preview_bytes, max_pixels)
        mosaic = render = None
        if failure is None and raw_path.exists():
            with np.load(raw_path) as raw_file:
                mosaic, render = raw_file["mosaic"], raw_file["render"]
    problem = None if mosaic is not None else (failure or "the RAW decoder did not return the sensor data")
    picture = render if render is not None else preview
    if picture is None:
        raise CorruptImage(f"the raw file's sensor data cannot be read ({problem}) and it has no readable preview")
    for array in (mosaic, preview, picture):
        if array is not None:
            array.setflags(write=False)
    raw = RawData(
        mosaic=mosaic,
        pattern=pattern,
        color_desc=str(head["color_desc"]),
        black_levels=tuple(int(v) for v in head["black_levels"]),
        white_level=int(head["white_level"]),
        camera_whitebalance=tuple(float(v) for v in head["camera_whitebalance"]),
        sensor_size=(int(head["width"]), int(head["height"])),
        preview=preview,
        preview_problem=preview_problem,
        problem=problem,
    )
    return np.ascontiguousarray(picture), raw


def _run_child(data: bytes, out: str, max_pixels: int, timeout_s: float) -> str | None:
    """Run the decoder; None when it finished, else why not (a people's sentence). Raises for the pixel limit."""
    command = [sys.executable, "-s", str(_CHILD), out, str(max_pixels), str(_memory_bound(max_pixels))]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"the RAW decoder took longer than {timeout_s:g} s and was stopped"
    message = done.stderr.decode("utf-8", "replace").strip().splitlines()
    last = message[-1][:300] if message else ""
    if done.returncode == 0:
        return None
    if done.returncode == 3:
        size = json.loads(last)
        width, height = size["width"], size["height"]
        raise TooManyPixels(
            f"the raw sensor declares {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} (possible decompression bomb)"
        )
    if done.returncode == 4:
        return f"the raw file cannot be read: {last}"
    if done.returncode == 5:
        return f"the raw sensor data cannot be read: {last}"
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else str(-done.returncode)
        return f"the RAW decoder crashed ({name}); the worker was not affected"
    if "MemoryError" in last:
        return "the RAW decoder ran out of its memory bound"
    return f"the RAW decoder failed (exit status {done.returncode}): {last}"


def _preview(head: dict, stored: np.ndarray, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """The embedded preview as uint8 RGB; its header's size is checked before Pillow decodes it."""
    if head.get("preview_format") == "bitmap":
        if stored.ndim != 3 or stored.shape[2] not in (1, 3):
            return None, f"the preview bitmap has an unusual shape {stored.shape}"
        return np.ascontiguousarray(np.repeat(stored, 3, axis=2) if stored.shape[2] == 1 else stored), None
    if head.get("preview_format") != "jpeg":
        return None, head.get("preview_problem") or "the file has no preview"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(stored.tobytes()))
            if pil.width * pil.height > max_pixels:
                return None, f"the preview declares {pil.width}x{pil.height} pixels, more than the limit"
            return np.asarray(pil.convert("RGB")), None
    except Exception as exc:  # Pillow raises many types on a damaged preview; the raw is still examined
        return None, f"the preview JPEG cannot be decoded: {type(exc).__name__}: {exc}"
