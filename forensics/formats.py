"""Recognise an image format from its magic bytes, never from its name.

Camera RAW files are one format, :attr:`ImageFormat.RAW`: their makers' containers differ
(CR2, NEF, ARW, ORF, RW2 and DNG are TIFF structures; RAF and CR3 are not), but they are read
by one decoder (LibRaw, :mod:`forensics.raw`) and examined by the same methods. Those with a
signature of their own are recognised from the first bytes; a TIFF-structured raw whose first
bytes are plain TIFF (DNG, NEF, ARW) is told from a TIFF by :func:`tiff_is_raw`, which walks
its IFDs for the DNG version tag or a colour-filter-array image.
"""

import struct
from enum import StrEnum

from forensics.errors import UnsupportedFormat


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    TIFF = "tiff"
    WEBP = "webp"
    BMP = "bmp"
    GIF = "gif"
    HEIF = "heif"
    AVIF = "avif"
    RAW = "raw"

    @property
    def extensions(self) -> frozenset[str]:
        """File-name extensions (lower case, with dot) that honestly name this format."""
        return _EXTENSIONS[self]

    @property
    def mime_type(self) -> str:
        return _MIME[self]


_EXTENSIONS: dict[ImageFormat, frozenset[str]] = {
    ImageFormat.JPEG: frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".mpo"}),
    ImageFormat.PNG: frozenset({".png"}),
    ImageFormat.TIFF: frozenset({".tif", ".tiff"}),
    ImageFormat.WEBP: frozenset({".webp"}),
    ImageFormat.BMP: frozenset({".bmp", ".dib"}),
    ImageFormat.GIF: frozenset({".gif"}),
    ImageFormat.HEIF: frozenset({".heic", ".heif", ".hif"}),
    ImageFormat.AVIF: frozenset({".avif"}),
    ImageFormat.RAW: frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl"}),
}

#: Every file-name extension that honestly names a supported format.
IMAGE_EXTENSIONS: frozenset[str] = frozenset().union(*_EXTENSIONS.values())

_MIME: dict[ImageFormat, str] = {
    ImageFormat.JPEG: "image/jpeg",
    ImageFormat.PNG: "image/png",
    ImageFormat.TIFF: "image/tiff",
    ImageFormat.WEBP: "image/webp",
    ImageFormat.BMP: "image/bmp",
    ImageFormat.GIF: "image/gif",
    ImageFormat.HEIF: "image/heif",
    ImageFormat.AVIF: "image/avif",
    # the shared-mime-info parent type of every camera raw format
    ImageFormat.RAW: "image/x-dcraw",
}

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

#: Bytes read from a file's start to sniff its format: every signature lies in the first 64, but
#: a TIFF-structured raw (DNG, NEF, ARW) is told from a TIFF only by the tags of its IFDs,
#: which camera makers write in the first kilobytes (the engine still walks the whole file).
SNIFF_BYTES = 64 * 1024


def sniff_format(head: bytes) -> ImageFormat:
    """Return the format whose signature starts ``head`` (the first bytes of a file).

    Raises :class:`UnsupportedFormat` naming what was seen when no signature matches.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if _raw_signature(head):
        return ImageFormat.RAW
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ImageFormat.RAW if tiff_is_raw(head) else ImageFormat.TIFF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:2] == b"BM" and len(head) >= 26:
        return ImageFormat.BMP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(head)
    if not head:
        raise UnsupportedFormat("the file is empty")
    raise UnsupportedFormat(f"not a supported image format (starts with bytes {head[:8].hex(' ')})")


def _sniff_isobmff(head: bytes) -> ImageFormat:
    """HEIF and AVIF share the ISO base media container; the ``ftyp`` brands tell them apart."""
    size = int.from_bytes(head[:4], "big")
    end = min(max(size, 16), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if b"crx " in brands:
        return ImageFormat.RAW
    if brands & _AVIF_BRANDS:
        return ImageFormat.AVIF
    if brands & _HEIF_BRANDS:
        return ImageFormat.HEIF
    raise UnsupportedFormat(f"ISO media file with brands {sorted(b.decode('latin-1') for b in brands)} is not an image")


def _raw_signature(head: bytes) -> bool:
    """Raw formats with a signature of their own: Canon CR2 ("CR\\x02" after a TIFF header),
    Olympus ORF ("IIRO", "IIRS", "MMOR"), Panasonic RW2 ("IIU\\0"), Fujifilm RAF."""
    return (
        (head[:4] == b"II*\x00" and head[8:11] == b"CR\x02")
        or head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
        or head.startswith(b"FUJIFILMCCD-RAW")
    )


#: TIFF tags that make a TIFF structure a camera raw: DNGVersion; and the photometric
#: interpretations of sensor data, CFA (32803) and LinearRaw (34892), found in the IFD of the
#: raw image of a DNG, NEF or ARW (IFD0, a following IFD, or a SubIFD).
_DNG_VERSION = 50706
_SUBIFDS = 330
_PHOTOMETRIC = 262
_SENSOR_PHOTOMETRIC = frozenset({32803, 34892})
#: IFDs walked at most, so a looping or hostile chain costs nothing.
_MAX_IFDS = 16


def tiff_is_raw(data: bytes) -> bool:
    """Whether the classic TIFF structure ``data`` (the whole file, or as much as is at hand) is a camera raw.

    Walks IFD0, the IFDs chained after it and their SubIFDs, reading only tag numbers and the
    photometric interpretation; anything out of ``data``'s bounds is ignored, so a short head
    simply finds less.
    """
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return False
    order = "<" if data[:2] == b"II" else ">"
    pending = [struct.unpack_from(order + "I", data, 4)[0]] if len(data) >= 8 else []
    seen: set[int] = set()
    while pending and len(seen) < _MAX_IFDS:
        at = pending.pop(0)
        if at in seen or at < 8 or at + 2 > len(data):
            continue
        seen.add(at)
        count = struct.unpack_from(order + "H", data, at)[0]
        for i in range(min(count, 1000)):
            entry = at + 2 + 12 * i
            if entry + 12 > len(data):
                break
            tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
            if tag == _DNG_VERSION:
                return True
            if tag == _PHOTOMETRIC and kind == 3 and struct.unpack_from(order + "H", data, entry + 8)[0] in _SENSOR_PHOTOMETRIC:
                return True
            if tag == _SUBIFDS and kind in (4, 13):
                if n == 1:
                    pending.append(struct.unpack_from(order + "I", data, entry + 8)[0])
                else:
                    where = struct.unpack_from(order + "I", data, entry + 8)[0]
                    pending += [struct.unpack_from(order + "I", data, where + 4 * k)[0] for k in range(min(n, 8)) if where + 4 * k + 4 <= len(data)]
        following = at + 2 + 12 * count
        if following + 4 <= len(data):
            pending.append(struct.unpack_from(order + "I", data, following)[0])
    return False
