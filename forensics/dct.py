"""The JPEG forward DCT of 8x8 pixel blocks, shared by every method that works on coefficients.

JPEG's forward DCT (ITU-T T.81, A.3.3) is the orthonormal 2-D DCT-II of a block of pixels
level-shifted by 128: ``C @ (B - 128) @ C.T`` with :data:`DCT8`, which equals
``scipy.fft.dctn(B - 128, norm="ortho")``. All 64 coefficients are computed as one
(N, 64) x (64, 64) product with the Kronecker form of the separable transform, which BLAS
runs far faster than N small batched products or a per-block FFT.
"""

import numpy as np
import scipy.fft

#: Orthonormal 8-point DCT-II matrix: row ``k`` is the ``k``-th basis vector.
DCT8: np.ndarray = scipy.fft.dct(np.eye(8), norm="ortho", axis=0).astype(np.float32)
#: ``vec(C @ B @ C.T) = vec(B) @ _DCT8_KRON_T`` for row-major 8x8 blocks.
_DCT8_KRON_T: np.ndarray = np.ascontiguousarray(np.kron(DCT8, DCT8).T)


def block_dct(blocks: np.ndarray, *, size: int = 8) -> np.ndarray:
    """Orthonormal 2-D DCT of pixel blocks of shape (..., 8, 8), level-shifted by 128; float32.

    Returns shape (..., size, size): all 64 coefficients by default; with ``size`` < 8 only
    the size x size lowest frequencies, computed separably (``C[:size] @ B @ C[:size].T``),
    which costs less when a method needs only those.

    Example
    -------
    >>> round(float(block_dct(np.full((1, 8, 8), 130, np.uint8))[0, 0, 0]), 4)  # DC: 8 x (130 - 128)
    16.0
    """
    if blocks.shape[-2:] != (8, 8) or not 1 <= size <= 8:
        raise ValueError(f"expected blocks of shape (..., 8, 8) and size 1..8, got shape {blocks.shape} and size {size}")
    shifted = blocks.astype(np.float32)  # a copy: the level shift below is done in place
    shifted -= np.float32(128.0)
    if size < 8:
        low = DCT8[:size]
        return low @ shifted @ low.T
    return (shifted.reshape(-1, 64) @ _DCT8_KRON_T).reshape(blocks.shape)
