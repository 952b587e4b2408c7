"""A finding's heatmap in storage: a float map for the join, an 8-bit gray PNG for clients.

The join fuses the float maps, so that the service's fused map is the engine's (``forensics
analyze``) for the same file; fusing the PNGs read back would quantise every map to steps of
1/255 first. The float map is float16 ``.npy``: rounding to it moves a value in [0, 1] by at
most 2^-12 (0.00024), against 1/510 for the PNG, at half the bytes of float32.

The float map lies under the PNG's key with ``.npy`` for ``.png``, so a finding's row keeps one
key, the PNG's, which the API links to. Maps stored by a version before the float maps have no
``.npy``: the join fuses their PNG, with a warning.
"""

import io
import logging
from pathlib import PurePosixPath

import numpy as np

from forensics.render import from_gray_png, gray_png
from service.storage import ObjectNotFound, Storage

logger = logging.getLogger(__name__)


def float_key(png_key: str) -> str:
    """The key of the float map stored beside the PNG under ``png_key``."""
    return str(PurePosixPath(png_key).with_suffix(".npy"))


def float_map(heatmap: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``heatmap`` as float16."""
    buffer = io.BytesIO()
    np.save(buffer, heatmap.astype(np.float16), allow_pickle=False)
    return buffer.getvalue()


def store_heatmap(storage: Storage, png_key: str, heatmap: np.ndarray) -> None:
    """Store ``heatmap`` (float, in [0, 1]) as the float map the join reads and the PNG clients see."""
    storage.put_bytes(float_key(png_key), float_map(heatmap), "application/octet-stream")
    storage.put_bytes(png_key, gray_png(heatmap), "image/png")


def load_heatmap(storage: Storage, png_key: str) -> np.ndarray:
    """The float32 map stored by :func:`store_heatmap` under ``png_key``, or, for a map stored
    before the float maps, its PNG's; raises :class:`ObjectNotFound` when neither is stored."""
    try:
        data = storage.get_bytes(float_key(png_key))
    except ObjectNotFound:
        logger.warning("heatmap %s has no float map (stored by an older version); fusing its 8-bit PNG", png_key)
        return from_gray_png(storage.get_bytes(png_key))
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
