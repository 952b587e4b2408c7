"""The file's own metadata (EXIF with maker notes, IPTC, XMP), read once per image.

:func:`find_blocks` takes the raw blocks out of the decoder while the image is decoded;
:func:`read_metadata` parses them into one immutable :class:`FileMetadata`, which
``DecodedImage.metadata`` computes on first use and every method then shares. Keys and value
forms are exiv2's (see :mod:`forensics.tags.exif`, :mod:`forensics.tags.xmp`,
:mod:`forensics.tags.iptc`), whatever reader produced them. Every reader is permissively
licensed: ExifRead (BSD-3-Clause), Pillow (MIT-CMU), defusedxml (PSF-2.0).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from forensics.tags.blocks import MetadataBlocks, find_blocks, tiff_structure
from forensics.tags.exif import read_exif
from forensics.tags.iptc import name_datasets
from forensics.tags.xmp import XmpError, parse_xmp

__all__ = ["FileMetadata", "MetadataBlocks", "find_blocks", "read_metadata", "tiff_structure"]


@dataclass(frozen=True, slots=True)
class FileMetadata:
    """Tags by exiv2 key: text values, lists for arrays and repeatable datasets, ``{'lang="..."': text}`` for XMP alternatives.

    ``reader`` names what read the EXIF (``exifread``, ``pillow`` after ExifRead failed, or
    ``none``); ``problems`` lists what could not be read; ``xmp_packets`` counts the XMP
    packets parsed; ``thumbnail`` is the EXIF thumbnail's bytes.
    """

    exif: Mapping[str, str]
    iptc: Mapping[str, Any]
    xmp: Mapping[str, Any]
    reader: str
    problems: tuple[str, ...]
    xmp_packets: int = 0
    thumbnail: bytes | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild, (dict(self.exif), dict(self.iptc), dict(self.xmp), self.reader, self.problems, self.xmp_packets, self.thumbnail)


def _rebuild(exif: dict[str, str], iptc: dict[str, Any], xmp: dict[str, Any], *rest: Any) -> FileMetadata:
    return FileMetadata(MappingProxyType(exif), MappingProxyType(iptc), MappingProxyType(xmp), *rest)


def read_metadata(blocks: MetadataBlocks, tiff_file: bytes | None = None) -> FileMetadata:
    """Parse ``blocks``; ``tiff_file`` is the whole file when it is a TIFF (its EXIF is the file itself).

    Never raises for malformed metadata: what could not be read is listed in ``problems``.
    """
    problems = list(blocks.problems)
    tiff = tiff_structure(tiff_file) if tiff_file is not None else blocks.exif
    exif: dict[str, str] = {}
    thumbnail, reader = None, "none"
    if tiff:
        found = read_exif(tiff)
        exif, thumbnail, reader = found.tags, found.thumbnail, found.reader
        problems += found.problems
    xmp: dict[str, Any] = {}
    parsed = 0
    for packet in blocks.xmp:
        try:
            xmp = {**parse_xmp(packet), **xmp}
            parsed += 1
        except XmpError as exc:
            problems.append(f"the XMP packet is unreadable: {exc}")
    iptc = name_datasets(blocks.iptc)
    return _rebuild(exif, iptc, xmp, reader, tuple(problems), parsed, thumbnail)
