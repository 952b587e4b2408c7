"""enhancement: views only, no score, ignored by fusion; bounded size; exact block energy."""

import numpy as np
from scipy.fft import dctn

from forensics.finding import Status
from forensics.fusion import fuse
from forensics.image import load_image
from forensics.methods.enhancement import MAX_SIDE, Enhancement, _block_ac_energy
from tests.conftest import dataset, jpeg_bytes

METHOD = Enhancement()


def test_views_and_histogram(astronaut: np.ndarray) -> None:
    image = load_image(jpeg_bytes(astronaut, 90))
    finding = METHOD.run(image)
    assert finding.status is Status.OK and finding.score is None and finding.label == "views"
    assert set(finding.views) == {"equalized", "edges", "local_contrast", "block_ac_energy"}
    for view in finding.views.values():
        assert view.dtype == np.uint8 and max(view.shape) <= MAX_SIDE
    assert finding.views["block_ac_energy"].shape == (64, 64)
    hist = finding.details["histogram"]
    assert all(len(hist[k]) == 256 for k in ("red", "green", "blue", "luma"))
    assert sum(hist["luma"]) == 512 * 512 and sum(hist["red"]) == 512 * 512
    assert fuse([finding], (512, 512)).score is None  # no scored finding: fusion has nothing


def test_block_energy_equals_dct_ac_energy() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    energy = _block_ac_energy(gray)
    assert energy is not None and energy.shape == (3, 5)
    block = gray[8:16, 16:24].astype(np.float64)
    coefs = dctn(block, norm="ortho")
    assert abs(energy[1, 2] - ((coefs**2).sum() - coefs[0, 0] ** 2)) < 1e-2 * coefs[0, 0] ** 2


def test_large_real_image_is_capped() -> None:
    sample = next(s for s in dataset("noso_copymove") if s.suffix == ".png")
    image = load_image(sample.path.read_bytes())
    finding = METHOD.run(image)
    assert finding.status is Status.OK
    assert finding.views["block_ac_energy"].shape == (image.height // 8, image.width // 8)
