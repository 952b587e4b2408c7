"""Copy-move detection finds clones (shifted, rotated) with their source and target, and stays quiet on originals."""

import cv2
import numpy as np
import pytest

from forensics import load_image
from forensics.evaluation import pixel_f1, roc_auc
from forensics.finding import Status
from forensics.methods.copymove import CopyMove

from .conftest import dataset, png_bytes

METHOD = CopyMove()


def clone(rgb: np.ndarray, src: tuple[int, int], dst: tuple[int, int], size: int, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Paste a ``size`` square from ``src`` (x, y) at ``dst``, optionally rotated; return image and mask of both."""
    out = rgb.copy()
    (sx, sy), (dx, dy) = src, dst
    patch = rgb[sy : sy + size, sx : sx + size]
    if angle:
        rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        patch = cv2.warpAffine(patch, rot, (size, size), borderMode=cv2.BORDER_REFLECT)
    out[dy : dy + size, dx : dx + size] = patch
    mask = np.zeros(rgb.shape[:2], bool)
    mask[sy : sy + size, sx : sx + size] = True
    mask[dy : dy + size, dx : dx + size] = True
    return out, mask


def test_original_photo_has_no_clone(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut)))
    assert finding.status is Status.OK
    assert finding.score < 50, finding.details


@pytest.mark.parametrize("angle", [0.0, 25.0])
def test_clone_is_found_with_source_and_target(astronaut: np.ndarray, angle: float) -> None:
    forged, mask = clone(astronaut, src=(300, 330), dst=(40, 380), size=96, angle=angle)
    finding = METHOD.run(load_image(png_bytes(forged)))
    assert finding.score >= 50, finding.details
    assert finding.details["clusters"]
    assert pixel_f1(finding.heatmap, mask) >= 0.5
    if angle:
        assert abs(abs(finding.details["clusters"][0]["rotation_deg"]) - angle) < 5


def test_too_small_image_is_not_applicable(astronaut: np.ndarray) -> None:
    finding = METHOD.run(load_image(png_bytes(astronaut[:40, :40])))
    assert finding.status is Status.NOT_APPLICABLE and finding.score is None


def test_comofod_detection_and_localisation() -> None:
    """CoMoFoD PNG pairs: measured AUC 0.83 and mean pixel F1 0.61 on all 116; asserted with a margin on 60."""
    samples = [s for s in dataset("comofod_subset") if s.suffix == ".png"][:60]
    scores = {True: [], False: []}
    f1s = []
    for s in samples:
        finding = METHOD.run(load_image(s.path.read_bytes()))
        scores[s.positive].append(finding.details["statistic"])
        if s.positive:
            f1s.append(pixel_f1(finding.heatmap, s.mask()))
    assert roc_auc(scores[True], scores[False]) >= 0.75
    assert float(np.mean(f1s)) >= 0.5
