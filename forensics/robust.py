"""Robust statistics the methods share: scores against an image's own typical value.

A method that compares each region with the rest of the same image (ELA's requantization
error, the noise level) needs a centre and a spread that the regions being looked for do not
drag along: the median and the median absolute deviation (MAD), scaled by 1.4826 so that
it estimates the standard deviation of normally distributed values (Rousseeuw & Croux,
"Alternatives to the median absolute deviation", JASA 88(424), 1993).
"""

import numpy as np

#: MAD -> standard deviation of a normal distribution (1 / the normal's 0.75 quantile).
MAD_TO_SIGMA = 1.4826


def robust_z(values: np.ndarray, valid: np.ndarray, *, min_spread: float) -> tuple[np.ndarray, float, float]:
    """Robust z-scores of ``values`` against the median and scaled MAD of its ``valid`` entries.

    Parameters
    ----------
    values : ndarray
        Any shape; float.
    valid : ndarray of bool
        Same shape: the entries that enter the median and the MAD, and that get a score.
    min_spread : float
        Floor of the spread, so that near-constant values do not inflate the scores.

    Returns
    -------
    z : ndarray
        ``(values - median) / spread`` where ``valid``, 0 elsewhere.
    center, spread : float
        The median and the spread used.
    """
    sample = values[valid]
    center = float(np.median(sample))
    spread = max(MAD_TO_SIGMA * float(np.median(np.abs(sample - center))), min_spread)
    return np.where(valid, (values - center) / spread, 0.0), center, spread
