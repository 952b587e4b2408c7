"""Image forensics engine: bytes in, findings out.

The library never starts servers or configures logging. It touches one piece of global
state, at import and on purpose: Pillow's decompression-bomb threshold (aligned with our own
pixel limit, see :mod:`forensics.image`).
``api/``, ``service/`` and ``worker/`` are thin layers over it.
"""

from forensics.errors import (
    CorruptImage,
    FileTooLarge,
    ForensicsError,
    TooManyPixels,
    UnsupportedFormat,
)
from forensics.finding import Finding, Status
from forensics.formats import ImageFormat
from forensics.image import DecodedImage, load_image
from forensics.pipeline import Report, analyze, analyze_image

__all__ = [
    "CorruptImage",
    "DecodedImage",
    "FileTooLarge",
    "Finding",
    "ForensicsError",
    "ImageFormat",
    "Report",
    "Status",
    "TooManyPixels",
    "UnsupportedFormat",
    "analyze",
    "analyze_image",
    "load_image",
]
