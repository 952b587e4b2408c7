"""The local manipulations: each returns the edited pixels, the mask of changed pixels, and its parameters.

Why these six: they are the operations of real forgeries and of the public benchmarks -
splicing and resampled splicing (CASIA, Dong et al. 2013; the synthetic splices of Kwon et al.,
CAT-Net, WACV 2021 / IJCV 2022), copy-move with a soft clone brush (CoMoFoD, Tralic et al.
2013), object removal by inpainting (Telea, J. Graphics Tools 2004; Bertalmio, Bertozzi &
Sapiro, CVPR 2001, OpenCV's ``INPAINT_TELEA`` and ``INPAINT_NS``), and the local blur and
colour retouching among the manipulation types ManTra-Net trains on (Wu, AbdAlmageed &
Natarajan, CVPR 2019).

Every function works on RGB uint8 pixels and draws all its choices from the generator it is
given. The mask is True exactly where the edit may have changed a pixel (non-zero opacity,
or the inpainted hole); every pixel outside it is unchanged.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import numpy as np

from forensics.synth.regions import composite, place, random_shape, soft_region

Params = dict[str, Any]


class Edited(NamedTuple):
    """An edit's result: pixels (RGB uint8), mask (bool, True = changed) and its parameters."""

    pixels: np.ndarray
    mask: np.ndarray
    params: Params


#: ``kind`` column of ``index.csv`` per edit (the manifest keeps the edit's own name).
KINDS: dict[str, str] = {
    "splice": "splice",
    "resampled_paste": "splice",
    "retouch_blur": "unknown",
    "clone_stamp": "copymove",
    "inpaint": "removal",
    "color_edit": "unknown",
}
#: Edits that paste content from another photo.
NEEDS_DONOR: frozenset[str] = frozenset({"splice", "resampled_paste"})


def _result(pixels: np.ndarray, mask: np.ndarray, **params: Any) -> Edited:
    return Edited(pixels, mask, {"mask_fraction": round(float(mask.mean()), 4), **params})


def _area(image: np.ndarray, rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) * image.shape[0] * image.shape[1]


def splice(host: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> Edited:
    """Paste a feathered polygon or ellipse (3-15 % of the host) cut from ``donor`` into ``host``.

    The region keeps the donor's pixels exactly, so it carries the donor's compression
    history; it lands at a random position of the host (rarely on the 8x8 grid).
    """
    sigma = float(rng.uniform(0.8, 2.5))
    alpha, shape = soft_region(
        rng, _area(host, rng, 0.03, 0.15), min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1]), sigma
    )
    dy, dx = place(rng, alpha.shape, donor.shape[:2])
    y, x = place(rng, alpha.shape, host.shape[:2])
    overlay = donor[dy : dy + alpha.shape[0], dx : dx + alpha.shape[1]]
    pixels, mask = composite(host, overlay, alpha, y, x)
    return _result(pixels, mask, shape=shape, feather=round(sigma, 2), at=[y, x], donor_at=[dy, dx])


def resampled_paste(host: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> Edited:
    """Like :func:`splice`, but the donor region is rescaled (0.6-1.6) and/or rotated (-20..20 deg).

    Bicubic interpolation, as an editor's free transform does; the resampling leaves the
    periodic interpolation traces that resampling detectors look for (Popescu & Farid,
    IEEE TSP 2005).
    """
    mode = str(rng.choice(["scale", "rotate", "both"]))
    scale = float(rng.uniform(0.6, 1.6)) if mode != "rotate" else 1.0
    angle = float(rng.uniform(-20.0, 20.0)) if mode != "scale" else 0.0
    sigma = float(rng.uniform(0.8, 2.5))
    reach = scale * (min(donor.shape[:2]) - 4) / math.sqrt(2.0)
    alpha, shape = soft_region(rng, _area(host, rng, 0.03, 0.15), int(min(host.shape[0], reach)), int(min(host.shape[1], reach)), sigma)
    ph, pw = alpha.shape
    half = 0.5 * math.hypot(ph, pw) / scale + 1.0
    cy = float(rng.uniform(half, donor.shape[0] - half))
    cx = float(rng.uniform(half, donor.shape[1] - half))
    warp = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    warp[:, 2] += np.array([pw / 2.0 - cx, ph / 2.0 - cy])
    overlay = cv2.warpAffine(donor, warp, (pw, ph), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    y, x = place(rng, alpha.shape, host.shape[:2])
    pixels, mask = composite(host, overlay, alpha, y, x)
    return _result(
        pixels,
        mask,
        shape=shape,
        feather=round(sigma, 2),
        at=[y, x],
        donor_center=[round(cy, 1), round(cx, 1)],
        scale=round(scale, 3),
        rotation_deg=round(angle, 2),
    )


def _busiest_box(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator, tries: int = 24) -> tuple[int, int]:
    """Among ``tries`` random boxes of ``size``, the one with the most gradient energy: an "object"."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    integral = cv2.integral(energy)
    boxes = [place(rng, size, image.shape[:2]) for _ in range(tries)]
    sums = [integral[y + size[0], x + size[1]] - integral[y, x + size[1]] - integral[y + size[0], x] + integral[y, x] for y, x in boxes]
    return boxes[int(np.argmax(sums))]


def retouch_blur(image: np.ndarray, rng: np.random.Generator) -> Edited:
    """Gaussian blur (sigma 1.5-4) inside a smooth-edged region (2-10 % of the image): a blur brush.

    The region is the most detailed of a few random places, as a retoucher blurs detail
    (a face, a plate, a background) rather than flat sky.
    """
    blur = float(rng.uniform(1.5, 4.0))
    sigma = float(rng.uniform(3.0, 8.0))
    alpha, shape = soft_region(rng, _area(image, rng, 0.02, 0.10), image.shape[0], image.shape[1], sigma)
    y, x = _busiest_box(image, alpha.shape, rng, tries=6)
    r = int(math.ceil(4 * blur))
    top, left = max(y - r, 0), max(x - r, 0)
    window = image[top : y + alpha.shape[0] + r, left : x + alpha.shape[1] + r]
    blurred = cv2.GaussianBlur(window, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
    overlay = blurred[y - top : y - top + alpha.shape[0], x - left : x - left + alpha.shape[1]]
    pixels, mask = composite(image, overlay, alpha, y, x)
    return _result(pixels, mask, shape=shape, feather=round(sigma, 2), at=[y, x], blur_sigma=round(blur, 2))


def clone_stamp(image: np.ndarray, rng: np.random.Generator) -> Edited:
    """Copy a soft-brushed region (2-8 %) of the photo onto another place of the same photo.

    Like Photoshop's clone stamp: the source stays as it was, so the mask marks the target only.
    Source and target boxes never overlap: the region spans at most a third of the long side.
    """
    sigma = float(rng.uniform(2.0, 6.0))
    h, w = image.shape[:2]
    axis = 0 if h >= w else 1
    limit = (h // 3, w) if axis == 0 else (h, w // 3)
    alpha, shape = soft_region(rng, _area(image, rng, 0.02, 0.08), limit[0], limit[1], sigma)
    target = place(rng, alpha.shape, (h, w))
    source = list(place(rng, alpha.shape, (h, w)))
    extent, length, t = alpha.shape[axis], image.shape[axis], target[axis]
    before, after = t - extent + 1, max(length - extent - (t + extent) + 1, 0)
    offset = int(rng.integers(0, max(before, 0) + after))
    source[axis] = offset if offset < before else t + extent + offset - max(before, 0)
    (y, x), (sy, sx), (ph, pw) = target, source, alpha.shape
    overlay = image[sy : sy + ph, sx : sx + pw]
    pixels, mask = composite(image, overlay, alpha, y, x)
    return _result(pixels, mask, shape=shape, feather=round(sigma, 2), at=[y, x], source_at=[sy, sx])


def inpaint(image: np.ndarray, rng: np.random.Generator) -> Edited:
    """Remove an "object": fill a region (0.5-4 %) around a high-contrast spot with ``cv2.inpaint``.

    The hole is a polygon or ellipse dilated by a few pixels (as a selection is expanded
    before a fill) and filled by Telea's fast-marching method or the Navier-Stokes method.
    """
    method = str(rng.choice(["telea", "ns"]))
    radius = int(rng.integers(3, 9))
    grow = int(rng.integers(1, 5))
    shape, name = random_shape(rng, _area(image, rng, 0.005, 0.04), image.shape[0] - 2 * grow, image.shape[1] - 2 * grow)
    hole = cv2.dilate(np.pad(shape, grow).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    y, x = _busiest_box(image, hole.shape, rng)
    pad = radius + 8
    top, left = max(y - pad, 0), max(x - pad, 0)
    window = image[top : y + hole.shape[0] + pad, left : x + hole.shape[1] + pad]
    hole_window = np.zeros(window.shape[:2], np.uint8)
    hole_window[y - top : y - top + hole.shape[0], x - left : x - left + hole.shape[1]] = hole
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    pixels = image.copy()
    pixels[top : top + window.shape[0], left : left + window.shape[1]] = cv2.inpaint(window, hole_window, radius, flag)
    mask = np.zeros(image.shape[:2], bool)
    mask[top : top + window.shape[0], left : left + window.shape[1]] = hole_window > 0
    return _result(pixels, mask, shape=name, at=[y, x], method=method, radius=radius, grow=grow)


def _adjust_colour(patch: np.ndarray, adjust: Params) -> np.ndarray:
    rgb = patch.astype(np.float32) / 255.0
    if "hue_deg" in adjust or "saturation" in adjust:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + adjust.get("hue_deg", 0.0)) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] * adjust.get("saturation", 1.0), 0.0, 1.0)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = float(rgb.mean())
    rgb = (rgb - mean) * adjust.get("contrast", 1.0) + mean + adjust.get("brightness", 0.0) / 255.0
    return np.clip(rgb * 255.0, 0, 255)


def color_edit(image: np.ndarray, rng: np.random.Generator) -> Edited:
    """Change brightness, contrast, hue and/or saturation inside a smooth region (3-15 %).

    A random non-empty subset of the four adjustments, each strong enough to be visible,
    as a masked adjustment layer would apply.
    """
    sigma = float(rng.uniform(4.0, 12.0))
    alpha, shape = soft_region(rng, _area(image, rng, 0.03, 0.15), image.shape[0], image.shape[1], sigma)
    y, x = place(rng, alpha.shape, image.shape[:2])
    signs = rng.choice([-1.0, 1.0], size=4)
    magnitudes = rng.uniform([10.0, 0.15, 8.0, 0.25], [35.0, 0.35, 30.0, 0.6])
    values = {
        "brightness": signs[0] * magnitudes[0],
        "contrast": float(np.exp(signs[1] * magnitudes[1])),
        "hue_deg": signs[2] * magnitudes[2],
        "saturation": float(np.exp(signs[3] * magnitudes[3])),
    }
    chosen = [name for name in values if rng.random() < 0.5] or [str(rng.choice(list(values)))]
    adjust = {name: round(float(values[name]), 3) for name in chosen}
    overlay = _adjust_colour(image[y : y + alpha.shape[0], x : x + alpha.shape[1]], adjust)
    pixels, mask = composite(image, overlay, alpha, y, x)
    return _result(pixels, mask, shape=shape, feather=round(sigma, 2), at=[y, x], **adjust)


#: Every local edit by name; those in :data:`NEEDS_DONOR` take ``(host, donor, rng)``, the others ``(image, rng)``.
LOCAL_EDITS: dict[str, Callable[..., Edited]] = {
    "splice": splice,
    "resampled_paste": resampled_paste,
    "retouch_blur": retouch_blur,
    "clone_stamp": clone_stamp,
    "inpaint": inpaint,
    "color_edit": color_edit,
}
