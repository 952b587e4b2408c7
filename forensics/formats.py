"""Recognise an image format from its magic bytes, never from its name."""

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
    ImageFormat.TIFF: frozenset({".tif", ".tiff", ".dng"}),
    ImageFormat.WEBP: frozenset({".webp"}),
    ImageFormat.BMP: frozenset({".bmp", ".dib"}),
    ImageFormat.GIF: frozenset({".gif"}),
    ImageFormat.HEIF: frozenset({".heic", ".heif", ".hif"}),
    ImageFormat.AVIF: frozenset({".avif"}),
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
}

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

#: Bytes needed to sniff every supported format.
SNIFF_BYTES = 64


def sniff_format(head: bytes) -> ImageFormat:
    """Return the format whose signature starts ``head`` (the first bytes of a file).

    Raises :class:`UnsupportedFormat` naming what was seen when no signature matches.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ImageFormat.TIFF
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
    if brands & _AVIF_BRANDS:
        return ImageFormat.AVIF
    if brands & _HEIF_BRANDS:
        return ImageFormat.HEIF
    raise UnsupportedFormat(f"ISO media file with brands {sorted(b.decode('latin-1') for b in brands)} is not an image")
