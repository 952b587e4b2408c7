"""Walk an image file's container structure (segments, chunks, boxes) without decoding pixels.

Tells where the image stream really ends, so that truncation and data appended after the
end (a second image, an archive, a tracking payload) can be reported, and lists the
structural problems met on the way (bad chunk CRCs, segments running past the end of file).
GIF is walked block by block to its trailer byte. TIFF, whose layout is a web of offsets
with no end marker, reports ``checked=False`` and relies on the decoder alone.
"""

import re
import zlib
from dataclasses import dataclass, field

from forensics.formats import ImageFormat


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What the container walk found. Offsets are byte offsets into the file."""

    checked: bool
    end_offset: int | None = None
    truncated: bool = False
    trailing_bytes: int = 0
    trailing_starts_with_jpeg: bool = False
    segments: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "end_offset": self.end_offset,
            "truncated": self.truncated,
            "trailing_bytes": self.trailing_bytes,
            "trailing_starts_with_jpeg": self.trailing_starts_with_jpeg,
            "segments": list(self.segments),
            "problems": list(self.problems),
        }


def inspect_container(data: bytes, fmt: ImageFormat) -> ContainerInfo:
    """Walk ``data`` as ``fmt``; never raises on malformed input, it reports instead."""
    walker = _WALKERS.get(fmt)
    if walker is None:
        return ContainerInfo(checked=False)
    return walker(data)


def _finish(data: bytes, end: int | None, truncated: bool, segments: list[str], problems: list[str]) -> ContainerInfo:
    trailing = 0 if end is None else max(0, len(data) - end)
    tail = data[end:] if end is not None else b""
    # Some writers pad with zero bytes after the end marker; that is not appended content.
    if trailing and not tail.strip(b"\x00"):
        trailing = 0
    return ContainerInfo(
        checked=True,
        end_offset=end,
        truncated=truncated,
        trailing_bytes=trailing,
        trailing_starts_with_jpeg=tail.lstrip(b"\x00").startswith(b"\xff\xd8\xff"),
        segments=tuple(segments),
        problems=tuple(problems),
    )


_JPEG_MARKER_NAMES = {
    0xC0: "SOF0", 0xC1: "SOF1", 0xC2: "SOF2", 0xC3: "SOF3", 0xC4: "DHT", 0xC9: "SOF9", 0xCA: "SOF10",
    0xCC: "DAC", 0xDA: "SOS", 0xDB: "DQT", 0xDD: "DRI", 0xFE: "COM",
}
# A marker inside entropy-coded data: 0xFF followed by anything but a stuffed 0x00 or RSTn.
_ENTROPY_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")


def _walk_jpeg(data: bytes) -> ContainerInfo:
    n = len(data)
    pos = 2
    segments: list[str] = []
    problems: list[str] = []
    while pos < n:
        if data[pos] != 0xFF:
            problems.append(f"expected a marker at byte {pos}, found 0x{data[pos]:02x}")
            return _finish(data, None, False, segments, problems)
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            segments.append("EOI")
            return _finish(data, pos, False, segments, problems)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        name = _JPEG_MARKER_NAMES.get(marker, f"APP{marker - 0xE0}" if 0xE0 <= marker <= 0xEF else f"0x{marker:02X}")
        segments.append(name)
        if length < 2:
            problems.append(f"{name} segment at byte {pos - 2} has an invalid length {length}")
            return _finish(data, None, False, segments, problems)
        if pos + length > n:
            problems.append(f"{name} segment at byte {pos - 2} runs past the end of the file")
            break
        pos += length
        if marker == 0xDA:
            match = _ENTROPY_MARKER.search(data, pos)
            if match is None:
                break
            pos = match.start()
    problems.append("the file ends before the JPEG end-of-image marker")
    return _finish(data, None, True, segments, problems)


def _walk_png(data: bytes) -> ContainerInfo:
    n = len(data)
    pos = 8
    segments: list[str] = []
    problems: list[str] = []
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        name = ctype.decode("latin-1")
        end = pos + 12 + length
        if end > n:
            problems.append(f"chunk {name!r} at byte {pos} runs past the end of the file")
            break
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            problems.append(f"chunk {name!r} at byte {pos} has a bad CRC")
        segments.append(name)
        pos = end
        if ctype == b"IEND":
            return _finish(data, pos, False, segments, problems)
    problems.append("the file ends before the PNG IEND chunk")
    return _finish(data, None, True, segments, problems)


def _walk_riff(data: bytes) -> ContainerInfo:
    declared = int.from_bytes(data[4:8], "little") + 8
    end = declared + (declared & 1)
    if len(data) < declared:
        return _finish(data, None, True, ["RIFF"], [f"the RIFF header declares {declared} bytes, the file has {len(data)}"])
    return _finish(data, min(end, len(data)), False, ["RIFF"], [])


def _walk_bmp(data: bytes) -> ContainerInfo:
    declared = int.from_bytes(data[2:6], "little")
    if declared < 26:
        return _finish(data, None, False, ["BM"], [f"the BMP header declares an implausible size {declared}"])
    if len(data) < declared:
        return _finish(data, None, True, ["BM"], [f"the BMP header declares {declared} bytes, the file has {len(data)}"])
    return _finish(data, declared, False, ["BM"], [])


def _walk_isobmff(data: bytes) -> ContainerInfo:
    n = len(data)
    pos = 0
    segments: list[str] = []
    while pos + 8 <= n:
        size = int.from_bytes(data[pos : pos + 4], "big")
        name = data[pos + 4 : pos + 8].decode("latin-1")
        header = 8
        if size == 1:
            if pos + 16 > n:
                break
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = n - pos
        if size < header:
            return _finish(data, None, False, segments, [f"box {name!r} at byte {pos} has an invalid size {size}"])
        segments.append(name)
        if pos + size > n:
            return _finish(data, None, True, segments, [f"box {name!r} at byte {pos} runs past the end of the file"])
        pos += size
    return _finish(data, pos, False, segments, [])


def _walk_gif(data: bytes) -> ContainerInfo:
    """Header, logical screen, then extension / image blocks (each a chain of sub-blocks) to 0x3B."""
    n = len(data)
    segments: list[str] = []
    pos = 13
    if n < 13:
        return _finish(data, None, True, segments, ["the GIF header is incomplete"])
    if data[10] & 0x80:
        pos += 3 << ((data[10] & 0x07) + 1)
    frames = 0
    while pos < n:
        block = data[pos]
        if block == 0x3B:
            segments.append(f"{frames} image(s)")
            segments.append("trailer")
            return _finish(data, pos + 1, False, segments, [])
        if block == 0x21:
            pos += 2
        elif block == 0x2C:
            frames += 1
            if pos + 10 > n:
                break
            flags = data[pos + 9]
            pos += 10 + ((3 << ((flags & 0x07) + 1)) if flags & 0x80 else 0) + 1
        else:
            segments.append(f"{frames} image(s)")
            return _finish(data, None, False, segments, [f"unexpected GIF block 0x{block:02x} at byte {pos}"])
        while pos < n and data[pos] != 0:  # sub-blocks: a length byte, then that many bytes
            pos += data[pos] + 1
        pos += 1
    segments.append(f"{frames} image(s)")
    return _finish(data, None, True, segments, ["the file ends before the GIF trailer"])


_WALKERS = {
    ImageFormat.JPEG: _walk_jpeg,
    ImageFormat.PNG: _walk_png,
    ImageFormat.WEBP: _walk_riff,
    ImageFormat.BMP: _walk_bmp,
    ImageFormat.GIF: _walk_gif,
    ImageFormat.HEIF: _walk_isobmff,
    ImageFormat.AVIF: _walk_isobmff,
}
