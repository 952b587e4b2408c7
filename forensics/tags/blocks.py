"""Take the raw metadata blocks (EXIF, XMP, IPTC) out of an image while it is decoded.

The decoders already walk the container (JPEG APP segments, PNG chunks, WebP chunks, TIFF
tags, HEIF items) and keep what they meet in ``info``; this module only picks the blocks
from there, so that nothing walks the file a second time. Parsing them is left to
:func:`forensics.tags.read_metadata`, which runs only when a method asks for the metadata.
"""

import logging
from dataclasses import dataclass

from PIL import Image, IptcImagePlugin

from forensics.formats import ImageFormat

logger = logging.getLogger(__name__)

#: The header that starts a TIFF structure, little- and big-endian.
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
#: GIF carries XMP only, in an application extension that Pillow does not keep (XMP
#: Specification Part 3, 1.1.2): the packet's bytes, then a 258-byte "magic trailer" that makes
#: them a valid chain of data sub-blocks.
_GIF_XMP = b"\x21\xff\x0bXMP DataXMP"
_GIF_TRAILER = b"\x01\xff\xfe\xfd"

#: IIM datasets as Pillow returns them: ((record, dataset), values in file order).
IptcDatasets = tuple[tuple[tuple[int, int], tuple[bytes, ...]], ...]


@dataclass(frozen=True, slots=True)
class MetadataBlocks:
    """The unparsed metadata of one image.

    ``exif`` is a TIFF structure (it starts with ``II*\\0`` or ``MM\\0*``); for a TIFF file
    it is ``None`` and the file itself is the structure. ``xmp`` holds the XMP packets in
    file order; ``iptc`` the IPTC-IIM datasets of a JPEG's Photoshop APP13 block or a TIFF's
    IPTC tag.
    """

    exif: bytes | None = None
    xmp: tuple[bytes, ...] = ()
    iptc: IptcDatasets = ()
    problems: tuple[str, ...] = ()


def find_blocks(pil: Image.Image, fmt: ImageFormat, text: dict[str, str], data: bytes) -> MetadataBlocks:
    """The metadata blocks of ``pil``, the loaded image of ``data`` (format ``fmt``).

    ``text`` is the image's text chunks: PNG files written by ImageMagick carry EXIF and XMP
    as hex "Raw profile" text, and compressed PNG XMP is only found there.
    """
    if fmt is ImageFormat.BMP:
        return MetadataBlocks()
    if fmt is ImageFormat.GIF:
        return MetadataBlocks(xmp=_gif_xmp(data))
    problems: list[str] = []
    exif = None if fmt is ImageFormat.TIFF else _exif(pil.info.get("exif"), text)
    xmp = _xmp(pil.info.get("xmp"), text)
    iptc: IptcDatasets = ()
    try:
        found = IptcImagePlugin.getiptcinfo(pil) or {}  # type: ignore[arg-type]
        iptc = tuple((key, tuple(value) if isinstance(value, list) else (value,)) for key, value in found.items())
    except Exception as exc:  # Pillow's IIM parser raises several types on damaged blocks
        problems.append(f"the IPTC block is unreadable: {type(exc).__name__}: {str(exc)[:200]}")
    return MetadataBlocks(exif=exif, xmp=xmp, iptc=iptc, problems=tuple(problems))


def tiff_structure(block: bytes | None) -> bytes | None:
    """The TIFF structure inside an EXIF block, which may start with ``Exif\\0\\0``."""
    if not block:
        return None
    if block[:6] == b"Exif\x00\x00":
        block = block[6:]
    return block if block[:4] in TIFF_HEADERS else None


def _exif(block: object, text: dict[str, str]) -> bytes | None:
    if isinstance(block, bytes):
        return tiff_structure(block)
    return tiff_structure(_raw_profile(text.get("Raw profile type exif")))


def _xmp(packet: object, text: dict[str, str]) -> tuple[bytes, ...]:
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if isinstance(packet, bytes) and packet.strip():
        return (packet,)
    for key in ("XML:com.adobe.xmp", "Raw profile type xmp"):
        value = text.get(key)
        if value:
            found = _raw_profile(value) if key.startswith("Raw") else value.encode("utf-8")
            if found:
                return (found,)
    return ()


def _gif_xmp(data: bytes) -> tuple[bytes, ...]:
    start = data.find(_GIF_XMP)
    if start < 0:
        return ()
    packet = data[start + len(_GIF_XMP) :]
    end = packet.find(_GIF_TRAILER)
    return (packet[:end],) if end > 0 else ()


def _raw_profile(value: str | None) -> bytes | None:
    """Decode ImageMagick's "Raw profile" text: a blank line, a name, a length, then hex digits."""
    if not value:
        return None
    lines = value.strip().split("\n")
    try:
        return bytes.fromhex("".join(lines[2:]))
    except ValueError:
        logger.info("a PNG raw profile is not hexadecimal")
        return None
