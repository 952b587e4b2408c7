"""Pictures of an image for the web page: a display-size JPEG and a thumbnail, kept in storage
beside the image's maps. The worker's join stores the display rendition from the pixels it has
decoded; one missing (an image analysed by an earlier version) is made from the stored original
on first request, and the thumbnail from the display rendition.

The page never ships the original for display: a 24 MP JPEG is 5-15 MB and costs a browser
hundreds of milliseconds to decode, while the display rendition, at the size of the overlay
and colour maps (long side :data:`~forensics.resample.DISPLAY_SIDE`), is a few hundred KB.
Pixels are as stored (EXIF orientation not applied), as in every map, so maps lie exactly
over them.

JPEG originals are decoded at a reduced scale by libjpeg itself (Pillow's draft mode: DCT
scaling by 1/2, 1/4 or 1/8), which on 24 MP takes a tenth of a full decode; other formats
are decoded as the worker decodes them.
"""

import io
from typing import Literal

import numpy as np
from PIL import Image as PILImage

from forensics import load_image
from forensics.errors import CorruptImage, TooManyPixels
from forensics.render import encode_jpeg
from forensics.resample import DISPLAY_SIDE, display_size, shrink
from service.models import Image
from service.settings import Settings
from service.storage import ObjectNotFound, Storage, image_prefix

Kind = Literal["display", "thumbnail"]
#: Long side of the thumbnails on the case page (shown at half that on screens of 2x density).
THUMBNAIL_SIDE = 320
#: People look at these pictures; nothing is measured from them.
QUALITY = 85
JPEG_MAGIC = b"\xff\xd8\xff"


def rendition_key(image: Image, kind: Kind) -> str:
    return f"{image_prefix(image.case_id, image.id)}/{kind}.jpg"


def rendition(storage: Storage, image: Image, kind: Kind, settings: Settings) -> bytes:
    """The JPEG of ``kind`` for ``image``, made and stored on first use.

    Raises :class:`ObjectNotFound` when the image has no stored original (refused at intake, or
    not fetched yet) and a :class:`~forensics.ForensicsError` when the original cannot be decoded.
    """
    key = rendition_key(image, kind)
    try:
        return storage.get_bytes(key)
    except ObjectNotFound:
        pass
    if kind == "thumbnail":
        data = encode_jpeg(_decode_jpeg(rendition(storage, image, "display", settings), THUMBNAIL_SIDE, settings.max_pixels), QUALITY)
    elif image.storage_key is None:
        raise ObjectNotFound(f"image {image.id} has no stored original")
    else:
        data = encode_jpeg(_display_pixels(storage.get_bytes(image.storage_key), settings), QUALITY)
    storage.put_bytes(key, data, "image/jpeg")
    return data


def store_display(storage: Storage, image: Image, rgb: np.ndarray) -> None:
    """Store the display rendition of pixels already decoded: the worker's join has them, so the
    first view of the image page need not decode the original again (about 0.2-0.6 s at 24 MP)."""
    storage.put_bytes(rendition_key(image, "display"), encode_jpeg(_reduced(rgb), QUALITY), "image/jpeg")


def _display_pixels(original: bytes, settings: Settings) -> np.ndarray:
    """RGB pixels of ``original`` at display size."""
    if original[:3] == JPEG_MAGIC:
        try:
            return _decode_jpeg(original, DISPLAY_SIDE, settings.max_pixels)
        except CorruptImage:  # a truncated or odd JPEG: the worker's decoder copes with more of them
            pass
    return _reduced(load_image(original, max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes).rgb)


def _reduced(rgb: np.ndarray) -> np.ndarray:
    return shrink(rgb, display_size(rgb.shape[1], rgb.shape[0]))


def _decode_jpeg(data: bytes, side: int, max_pixels: int) -> np.ndarray:
    """A JPEG's RGB pixels with the long side reduced to at most ``side``, decoded at the coarsest DCT scale that allows it."""
    try:
        with PILImage.open(io.BytesIO(data)) as pil:
            if pil.width * pil.height > max_pixels:
                raise TooManyPixels(f"{pil.width}x{pil.height} pixels, more than the limit of {max_pixels:,}")
            size = display_size(pil.width, pil.height, side)
            pil.draft("RGB", size)
            rgb = np.asarray(pil.convert("RGB"))
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise CorruptImage(f"the JPEG cannot be decoded: {exc}") from exc
    return shrink(rgb, display_size(rgb.shape[1], rgb.shape[0], side))
