"""Camera RAW files for the tests and the bench: a minimal DNG writer and two ways to fill one.

No library at hand writes DNG (rawpy/LibRaw only reads), so :func:`dng_bytes` lays out the
TIFF structure of DNG 1.4 itself: IFD0 holds the JPEG preview (``NewSubFileType`` 1, as
cameras and Adobe's converter write it) with the DNG tags, and one SubIFD holds the CFA
mosaic (``PhotometricInterpretation`` 32803, 16-bit, uncompressed).

:func:`simulated_sensor` makes a genuine-like raw: a smooth scene in linear light, sampled
through an RGGB Bayer filter with Poisson-Gaussian noise (Foi et al., IEEE TIP 2008), 14-bit;
its preview is rendered from the mosaic as a camera would. :func:`raw_from_jpeg` makes the
forgery the ``raw_consistency`` method must catch: a JPEG's gamma undone, its 8-bit values
scaled to 14 bits and re-mosaicked.
"""

import io
import struct

import cv2
import numpy as np
from PIL import Image

BLACK = 512
WHITE = 16383
#: TIFF field types: BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL.
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_SIZES = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SRATIONAL: 8}


def _pack(kind: int, values: object) -> bytes:
    if kind == _ASCII:
        return str(values).encode("ascii") + b"\x00"
    vals = list(values) if isinstance(values, (list, tuple)) else [values]
    if kind == _BYTE:
        return bytes(vals)
    if kind == _SHORT:
        return struct.pack(f"<{len(vals)}H", *vals)
    if kind == _LONG:
        return struct.pack(f"<{len(vals)}I", *vals)
    fmt = "<2I" if kind == _RATIONAL else "<2i"
    return b"".join(struct.pack(fmt, round(v * 10000), 10000) for v in vals)


def _ifd(entries: dict[int, tuple[int, object]], start: int, next_ifd: int = 0) -> bytes:
    """One IFD at file offset ``start``, its out-of-line values right after it."""
    items = sorted(entries.items())
    table_len = 2 + 12 * len(items) + 4
    extra = bytearray()
    table = bytearray(struct.pack("<H", len(items)))
    for tag, (kind, values) in items:
        payload = _pack(kind, values)
        count = len(payload) // _SIZES[kind]
        if len(payload) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", tag, kind, count, start + table_len + len(extra))
            extra += payload + (b"\x00" if len(payload) % 2 else b"")
    table += struct.pack("<I", next_ifd)
    return bytes(table + extra)


def dng_bytes(
    mosaic: np.ndarray,
    preview_jpeg: bytes,
    preview_size: tuple[int, int],
    *,
    black: int = BLACK,
    white: int = WHITE,
    make: str = "Simulated",
    model: str = "Sensor 1",
    cfa: tuple[int, int, int, int] = (0, 1, 1, 2),
) -> bytes:
    """A DNG holding ``mosaic`` (uint16, H x W, RGGB by default) and a baseline JPEG preview."""
    height, width = mosaic.shape
    raw = np.ascontiguousarray(mosaic, dtype="<u2").tobytes()
    pw, ph = preview_size
    # Layout as cameras write it, the tags first: header | IFD0 | SubIFD | preview JPEG | raw strip.
    # Every offset below fits in its entry, so the IFDs' lengths do not depend on the offsets' values.
    preview_at = raw_at = 0
    ifd0_at = 8
    sub_entries: dict[int, tuple[int, object]] = {
        254: (_LONG, 0),
        256: (_LONG, width),
        257: (_LONG, height),
        258: (_SHORT, 16),
        259: (_SHORT, 1),
        262: (_SHORT, 32803),
        273: (_LONG, raw_at),
        277: (_SHORT, 1),
        278: (_LONG, height),
        279: (_LONG, len(raw)),
        284: (_SHORT, 1),
        33421: (_SHORT, (2, 2)),
        33422: (_BYTE, cfa),
        50710: (_BYTE, (0, 1, 2)),
        50713: (_SHORT, (1, 1)),
        50714: (_LONG, black),
        50717: (_LONG, white),
    }
    ifd0_entries: dict[int, tuple[int, object]] = {
        254: (_LONG, 1),
        256: (_LONG, pw),
        257: (_LONG, ph),
        258: (_SHORT, (8, 8, 8)),
        259: (_SHORT, 7),
        262: (_SHORT, 6),
        271: (_ASCII, make),
        272: (_ASCII, model),
        273: (_LONG, preview_at),
        277: (_SHORT, 3),
        278: (_LONG, ph),
        279: (_LONG, len(preview_jpeg)),
        284: (_SHORT, 1),
        305: (_ASCII, "raw_support"),
        330: (_LONG, 0),  # SubIFDs: filled in below
        50706: (_BYTE, (1, 4, 0, 0)),
        50707: (_BYTE, (1, 1, 0, 0)),
        50708: (_ASCII, f"{make} {model}"),
        50721: (_SRATIONAL, (0.6722, -0.1377, -0.0673, -0.4655, 1.2409, 0.2430, -0.0879, 0.1764, 0.6484)),
        50728: (_RATIONAL, (0.5, 1.0, 0.7)),
        50778: (_SHORT, 21),
    }
    sub_at = ifd0_at + len(_ifd(ifd0_entries, ifd0_at))
    preview_at = sub_at + len(_ifd(sub_entries, sub_at))
    raw_at = preview_at + len(preview_jpeg) + (len(preview_jpeg) % 2)
    ifd0_entries[330], ifd0_entries[273], sub_entries[273] = (_LONG, sub_at), (_LONG, preview_at), (_LONG, raw_at)
    header = b"II*\x00" + struct.pack("<I", ifd0_at)
    tags = _ifd(ifd0_entries, ifd0_at) + _ifd(sub_entries, sub_at)
    return header + tags + preview_jpeg + b"\x00" * (len(preview_jpeg) % 2) + raw


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4))


def smooth_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A linear-light RGB scene (H x W x 3 in [0, 1]): broad gradients and soft shapes, like defocused detail."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(4, height // 64), max(4, width // 64), 3)).astype(np.float32)
    scene = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx / width * 0.6 + yy / height * 0.3)[:, :, None]
    scene = np.clip(0.15 + 0.55 * scene * (0.4 + ramp), 0.002, 0.95)
    return _srgb_decode(scene).astype(np.float32)


def mosaic_rggb(rgb: np.ndarray) -> np.ndarray:
    """The RGGB Bayer samples of a full-colour H x W x 3 image, as one H x W plane."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    out[0::2, 0::2] = rgb[0::2, 0::2, 0]
    out[0::2, 1::2] = rgb[0::2, 1::2, 1]
    out[1::2, 0::2] = rgb[1::2, 0::2, 1]
    out[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return out


_WB = np.array([2.0, 1.0, 1.0 / 0.7], np.float32)  # the inverse of AsShotNeutral (0.5, 1, 0.7)


def render_preview(mosaic: np.ndarray, black: int, white: int, scale: float = 0.5, quality: int = 90) -> tuple[bytes, tuple[int, int]]:
    """A camera-like preview: bilinear demosaic, white balance, sRGB tone curve, resized, JPEG."""
    norm = (mosaic.astype(np.float32) - black) / (white - black)
    rgb = cv2.cvtColor(np.clip(norm * 65535, 0, 65535).astype(np.uint16), cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535
    rgb = _srgb_encode(rgb * _WB)
    h, w = mosaic.shape
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize((rgb * 255 + 0.5).clip(0, 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, "JPEG", quality=quality)
    return buf.getvalue(), size


def simulated_sensor(height: int = 1024, width: int = 1536, seed: int = 0, gain: float = 0.25, read_noise: float = 3.0) -> bytes:
    """A genuine-like DNG: Poisson shot noise (``gain`` DN per electron) plus Gaussian read noise, 14-bit."""
    rng = np.random.default_rng(seed)
    scene = smooth_scene(height, width, seed) / _WB  # the camera sees the unbalanced scene
    electrons = mosaic_rggb(scene) * (WHITE - BLACK) / gain
    signal = rng.poisson(electrons).astype(np.float32) * gain + rng.normal(0, read_noise, electrons.shape).astype(np.float32)
    mosaic = np.clip(np.round(signal + BLACK), 0, WHITE).astype(np.uint16)
    preview, size = render_preview(mosaic, BLACK, WHITE)
    return dng_bytes(mosaic, preview, size)


def raw_from_jpeg(height: int = 1024, width: int = 1536, seed: int = 0) -> bytes:
    """A forged DNG: a camera-like JPEG of the scene, its sRGB curve and white balance undone, 8-bit values scaled to 14 bits."""
    genuine = simulated_sensor(height, width, seed)
    jpeg_full, _ = render_preview(_mosaic_of(genuine), BLACK, WHITE, scale=1.0, quality=92)
    rgb = np.asarray(Image.open(io.BytesIO(jpeg_full)).convert("RGB"), np.float32) / 255
    linear = _srgb_decode(rgb) / _WB
    mosaic = np.clip(np.round(mosaic_rggb(linear) * (WHITE - BLACK) + BLACK), 0, WHITE).astype(np.uint16)
    preview, size = render_preview(mosaic, BLACK, WHITE)
    return dng_bytes(mosaic, preview, size)


def _mosaic_of(dng: bytes) -> np.ndarray:
    """The mosaic :func:`dng_bytes` wrote (read back from its fixed layout)."""
    ifd0_at = struct.unpack_from("<I", dng, 4)[0]
    count = struct.unpack_from("<H", dng, ifd0_at)[0]
    entries = {struct.unpack_from("<H", dng, ifd0_at + 2 + 12 * i)[0]: ifd0_at + 2 + 12 * i for i in range(count)}
    sub_at = struct.unpack_from("<I", dng, entries[330] + 8)[0]
    sub_count = struct.unpack_from("<H", dng, sub_at)[0]
    sub = {struct.unpack_from("<H", dng, sub_at + 2 + 12 * i)[0]: sub_at + 2 + 12 * i for i in range(sub_count)}
    width, height = (struct.unpack_from("<I", dng, sub[t] + 8)[0] for t in (256, 257))
    offset = struct.unpack_from("<I", dng, sub[273] + 8)[0]
    return np.frombuffer(dng, "<u2", width * height, offset).reshape(height, width)
