"""forensics.robust: the robust z-score ELA and noise score regions with."""

import numpy as np
import pytest

from forensics.robust import robust_z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_against_the_median_and_scaled_mad_of_the_valid_entries(dtype: type) -> None:
    values = np.array([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]], dtype=dtype)
    valid = np.array([[True, True, True], [True, True, False]])
    z, center, spread = robust_z(values, valid, min_spread=0.1)
    # valid: 1 2 3 4 100 -> median 3, |deviations| 2 1 0 1 97 -> MAD 1
    assert center == 3.0 and spread == pytest.approx(1.4826)
    np.testing.assert_allclose(z, [[-2 / 1.4826, -1 / 1.4826, 0.0], [1 / 1.4826, 97 / 1.4826, 0.0]], rtol=1e-6)
    assert z.dtype == dtype


def test_a_constant_image_is_floored_not_divided_by_zero() -> None:
    z, center, spread = robust_z(np.full((4, 4), 2.0), np.ones((4, 4), bool), min_spread=0.5)
    assert (center, spread) == (2.0, 0.5) and not z.any()
