"""forensics.dct: the one JPEG forward DCT of 8x8 blocks (ELA, jpeg, resave)."""

import numpy as np
import pytest
import scipy.fft

from forensics.dct import DCT8, block_dct


def test_the_matrix_is_the_textbook_orthonormal_dct_ii_bit_for_bit() -> None:
    """The cosine formula the methods used to build their own matrices from gives the same float32 values."""
    n = np.arange(8)
    formula = np.sqrt(np.where(n[:, None] == 0, 1, 2) / 8) * np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16)
    assert np.array_equal(DCT8, formula.astype(np.float32))
    np.testing.assert_allclose(DCT8 @ DCT8.T, np.eye(8), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("shape", [(5, 8, 8), (3, 4, 8, 8), (0, 8, 8)])
def test_blocks_transform_as_scipy_dctn_of_the_level_shifted_pixels(dtype: type, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, shape).astype(dtype)
    expected = scipy.fft.dctn(blocks.astype(np.float64) - 128.0, norm="ortho", axes=(-2, -1))
    full = block_dct(blocks)
    assert full.dtype == np.float32 and full.shape == shape
    np.testing.assert_allclose(full, expected, atol=2e-3)
    low = block_dct(blocks, size=4)
    assert low.shape == (*shape[:-2], 4, 4)
    np.testing.assert_allclose(low, expected[..., :4, :4], atol=2e-3)


def test_blocks_of_another_shape_are_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"got shape \(2, 4, 4\)"):
        block_dct(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="size 9"):
        block_dct(np.zeros((2, 8, 8)), size=9)
