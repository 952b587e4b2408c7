"""Local features for crop-tolerant near-duplicates (:mod:`forensics.keypoints`) on real pictures: crops,
quarter-turns and re-encodes share a region; different pictures do not; flat pictures give nothing
to match; storage round-trips."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from forensics import keypoints, pdq

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PICTURES = [
    "cvip_copymove/authentic/D3_im1.png",
    "dresden_natural/authentic/natural/Nikon_D70_1_20749.JPG",
    "casia2_samples/authentic/Au_ani_00001.jpg",
]


def _picture(name: str) -> PILImage.Image:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"reference images not found at {path}")
    with PILImage.open(path) as im:
        im.draft("RGB", (1600, 1600))
        picture = im.convert("RGB")
    picture.thumbnail((1600, 1600))
    return picture


def _features(picture: PILImage.Image) -> keypoints.Features:
    return keypoints.extract(pdq.luminance(np.asarray(picture)))


def _crop(picture: PILImage.Image, left: float, top: float, right: float, bottom: float) -> PILImage.Image:
    w, h = picture.size
    return picture.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _jpeg(picture: PILImage.Image, quality: int) -> PILImage.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.mark.parametrize("name", PICTURES)
def test_crops_share_a_region_with_their_original(name: str) -> None:
    original = _picture(name)
    stored = _features(original)
    assert len(stored) >= 200
    for sides, coverage in (((0.10, 0.10, 0, 0), 0.81), ((0.05, 0.05, 0.05, 0.05), 0.81), ((0.10, 0, 0, 0), 0.90)):
        found = keypoints.match(stored, _features(_jpeg(_crop(original, *sides), 80)))
        assert found is not None and found.inliers >= 3 * keypoints.MIN_INLIERS, sides
        assert found.coverage == pytest.approx(coverage, abs=0.02) and abs(found.rotation) < 1
    # the other way round: the stored picture is the crop, the query the whole
    whole = keypoints.match(_features(_crop(original, 0.1, 0.1, 0, 0)), stored)
    assert whole is not None and whole.coverage == pytest.approx(1.0, abs=0.03) and whole.scale == pytest.approx(1 / 0.9, abs=0.02)
    turned = keypoints.match(stored, _features(_crop(original, 0.05, 0, 0, 0.05).transpose(PILImage.Transpose.ROTATE_90)))
    assert turned is not None and abs(abs(turned.rotation) - 90) < 1


def test_different_pictures_do_not() -> None:
    features = [_features(_picture(name)) for name in PICTURES]
    for i, a in enumerate(features):
        for b in features[i + 1 :]:
            assert keypoints.match(a, b) is None and keypoints.match(b, a) is None


def test_flat_pictures_give_nothing_to_match() -> None:
    flat = keypoints.extract(np.full((480, 640), 128, dtype=np.float32))
    assert len(flat) == 0 and keypoints.stored_keys(flat).size == 0
    assert keypoints.match(flat, flat) is None
    tiny = keypoints.extract(np.random.default_rng(0).uniform(0, 255, (38, 174)))
    assert tiny.width == 1 and tiny.height == pytest.approx(38 / 174, abs=0.01)
    for sliver in ((40000, 3), (3, 40000), (1, 1), (100, 20000)):  # no room for a keypoint: none, and no error
        found = keypoints.extract(np.random.default_rng(1).uniform(0, 255, sliver).astype(np.float32))
        assert len(found) == 0 and keypoints.match(found, tiny) is None


def test_storage_round_trip() -> None:
    features = _features(_picture(PICTURES[0]))
    again = keypoints.Features.from_bytes(features.to_bytes())
    assert np.array_equal(again.descriptors, features.descriptors)
    assert np.abs(again.points - features.points).max() < 1e-3  # float16: under a pixel at 640
    assert (again.width, again.height) == pytest.approx((features.width, features.height))
    keys = keypoints.stored_keys(features)
    assert keys.dtype == np.uint32 and len(keys) <= keypoints.KEY_TABLES * keypoints.INDEXED and np.all(np.diff(keys.astype(np.int64)) > 0)
    assert set((keys >> keypoints.KEY_BITS).tolist()) == set(range(keypoints.KEY_TABLES))
