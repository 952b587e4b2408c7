"""forensics.synth: edits change only their masked pixels, encoders write what they claim, and
the generated datasets are reproducible, grouped by original and readable by read_index."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.dataset import read_index
from forensics.jpeg_tables import ijg_table
from forensics.synth import (
    KINDS,
    LOCAL_DIR,
    LOCAL_EDITS,
    NEEDS_DONOR,
    PHOTOSHOP_TABLES_PATH,
    RESAVE_DIR,
    EncoderSpec,
    Settings,
    aligned_crop,
    collect_photoshop_tables,
    encode,
    list_originals,
    load_photoshop_tables,
    load_rgb,
    select_originals,
    synthesize,
)
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def data_root() -> Path:
    if not (SHARED_DATA / "dresden_natural" / "index.csv").exists():
        pytest.skip(f"reference data {SHARED_DATA} is absent (it lives beside the repository as ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def photos(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A textured 512x640 crop of a Nikon D70 original (host) and a CASIA original (donor, another dataset)."""
    host = load_rgb(data_root / "dresden_natural/authentic/natural/Nikon_D70_0_19593.JPG")[800:1312, 1200:1840]
    donor = load_rgb(data_root / "casia2_samples/authentic/Au_ani_00001.jpg")
    return np.ascontiguousarray(host), donor


@pytest.mark.parametrize("name", list(LOCAL_EDITS))
@pytest.mark.parametrize("seed", [0, 7])
def test_edit_changes_only_masked_pixels(photos: tuple[np.ndarray, np.ndarray], name: str, seed: int) -> None:
    host, donor = photos
    rng = np.random.default_rng(seed)
    edited = LOCAL_EDITS[name](host, donor, rng) if name in NEEDS_DONOR else LOCAL_EDITS[name](host, rng)
    assert edited.pixels.dtype == np.uint8 and edited.pixels.shape == host.shape
    assert edited.mask.dtype == bool and edited.mask.shape == host.shape[:2]
    changed = np.any(edited.pixels != host, axis=2)
    assert not changed[~edited.mask].any(), "a pixel outside the mask changed"
    # the feathered skirt (opacity down to 1/255) is in the mask but may round to no change
    assert changed.sum() > 0.3 * edited.mask.sum(), "the masked region should visibly change"
    low = 0.004 if name == "inpaint" else 0.015
    assert low <= edited.mask.mean() <= 0.25
    assert edited.params["mask_fraction"] == pytest.approx(edited.mask.mean(), abs=1e-4)
    assert KINDS[name] in {"splice", "copymove", "removal", "unknown"}


def test_edits_are_deterministic_per_generator(photos: tuple[np.ndarray, np.ndarray]) -> None:
    host, donor = photos
    first = LOCAL_EDITS["resampled_paste"](host, donor, np.random.default_rng(3))
    again = LOCAL_EDITS["resampled_paste"](host, donor, np.random.default_rng(3))
    other = LOCAL_EDITS["resampled_paste"](host, donor, np.random.default_rng(4))
    assert np.array_equal(first.pixels, again.pixels) and first.params == again.params
    assert not np.array_equal(first.pixels, other.pixels)


def test_clone_stamp_copies_from_the_same_photo(photos: tuple[np.ndarray, np.ndarray]) -> None:
    host, _ = photos
    edited = LOCAL_EDITS["clone_stamp"](host, np.random.default_rng(11))
    (y, x), (sy, sx) = edited.params["at"], edited.params["source_at"]
    ys, xs = np.nonzero(edited.mask)
    core = edited.pixels[ys, xs].astype(int) - host[ys - y + sy, xs - x + sx].astype(int)
    # where the brush is opaque the target holds the source's pixels exactly
    assert (np.abs(core).max(axis=1) == 0).mean() > 0.3


def test_aligned_crop_keeps_the_jpeg_grid() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, h, w = aligned_crop(2592, 3872, 1536, rng)
        assert top % 8 == 0 and left % 8 == 0 and (h, w) == (1536, 1536)
        assert top + h <= 2592 and left + w <= 3872
    assert aligned_crop(256, 384, 1536, rng) == (0, 0, 256, 384)


def test_originals_follow_the_rules(data_root: Path) -> None:
    originals, skipped = list_originals(data_root)
    keys = {o.key for o in originals}
    assert "dresden_natural:authentic/natural/Nikon_D200_0_14902.JPG" in keys
    assert not any(k.startswith("comofod_subset:postprocessed/") for k in keys)
    exif = [o for o in originals if o.dataset == "exif_samples_ianare"]
    assert exif and all(o.format == "JPEG" and min(o.width, o.height) >= 256 for o in exif)
    assert any("tiff/" in s for s in skipped) and any("< 256 px" in s for s in skipped)
    small = select_originals(originals, 2, seed=0)
    large = select_originals(originals, 4, seed=0)
    assert {o.key for o in small} <= {o.key for o in large}, "raising --per-source only adds originals"


def test_encoders_write_the_tables_they_claim() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(encode(rgb, EncoderSpec("ijg", 77, "4:4:4")))) as im:
        assert list(im.quantization[0]) == ijg_table(77).ravel().tolist()
        assert im.layer[0][1:3] == (1, 1)
    table = load_photoshop_tables()[0]
    with Image.open(io.BytesIO(encode(rgb, EncoderSpec("photoshop", table.ijg_quality_estimate, table.subsampling, table.id)))) as im:
        assert tuple(im.quantization[0]) == table.luminance and tuple(im.quantization[1]) == table.chrominance
    with Image.open(io.BytesIO(encode(rgb, EncoderSpec("png")))) as im:
        assert np.array_equal(np.asarray(im), rgb)


def test_photoshop_tables_rebuild_from_the_data(data_root: Path) -> None:
    stored = json.loads(PHOTOSHOP_TABLES_PATH.read_text())
    assert collect_photoshop_tables(data_root)["tables"] == stored["tables"]
    for entry in stored["tables"]:
        assert all((data_root / f).exists() for f in entry["files"])
        assert all("photoshop" in s.lower() for s in entry["software"])
    # a camera original is not Photoshop's
    assert not any("dresden_natural" in f for e in stored["tables"] for f in e["files"])


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        folder = tmp_path_factory.mktemp(f"synth_{name}")
        synthesize(Settings(data_root, folder, seed=seed, per_source=1, max_side=512), workers=1, progress=False)
        out[name] = folder
    return out


def test_same_seed_same_bytes_other_seed_differs(runs: dict[str, Path]) -> None:
    a, b, c = _tree(runs["a"]), _tree(runs["b"]), _tree(runs["c"])
    assert a == b
    assert a != c


def test_local_dataset_is_readable_grouped_and_masked(runs: dict[str, Path], data_root: Path) -> None:
    folder = runs["a"] / LOCAL_DIR
    samples = read_index(folder)
    rows = {s.path.relative_to(folder).as_posix(): s for s in samples}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == set(rows)
    with (folder / "index.csv").open(newline="") as fh:
        sources = {r["file"]: r["source"] for r in csv.DictReader(fh)}
    tampered = [s for s in samples if s.label == "tampered"]
    authentic = [s for s in samples if s.label == "authentic"]
    assert len(tampered) >= 10 and authentic
    authentic_sources = {sources[s.path.relative_to(folder).as_posix()] for s in authentic}
    for sample in tampered:
        file = sample.path.relative_to(folder).as_posix()
        params = manifest["files"][file]
        assert sources[file] in authentic_sources, "every tampered image's original has an authentic row"
        dataset, original = sources[file].split(":", 1)
        assert (data_root / dataset / original).exists()
        mask = sample.mask()
        with Image.open(sample.path) as im:
            assert mask is not None and mask.any() and mask.shape == (im.height, im.width)
            assert im.format == ("PNG" if params["encoder"]["encoder"] == "png" else "JPEG")
        assert sample.kind == KINDS[params["edit"]]
        if params["edit"] in NEEDS_DONOR:
            assert params["donor"]["source"] != sources[file]
    assert all(s.mask_path is None for s in authentic)


def test_resave_dataset_pairs_originals_with_whole_resaves(runs: dict[str, Path]) -> None:
    folder = runs["a"] / RESAVE_DIR
    samples = read_index(folder)
    edited = [s for s in samples if s.label == "edited"]
    originals = [s for s in samples if s.label == "authentic"]
    assert edited and len(edited) == len(originals)
    for sample in originals:
        assert sample.path.exists() and sample.suffix in {".jpg", ".jpeg"}
    for sample in edited:
        assert sample.mask() is None and sample.kind == "unknown"
        with Image.open(sample.path) as im:
            assert im.format == "JPEG"


def test_lossless_edits_match_their_twin_outside_the_mask(runs: dict[str, Path]) -> None:
    """End to end: a PNG-saved edit differs from its PNG-saved authentic twin only inside its mask."""
    folder = runs["a"] / LOCAL_DIR
    checked = 0
    for sample in read_index(folder):
        if sample.label != "tampered" or sample.suffix != ".png":
            continue
        twin = folder / "authentic" / f"{sample.path.name.split('__e')[0]}__png.png"
        with Image.open(sample.path) as edited, Image.open(twin) as original:
            changed = np.any(np.asarray(edited.convert("RGB")) != np.asarray(original.convert("RGB")), axis=2)
        mask = sample.mask()
        assert mask is not None and changed.any() and not changed[~mask].any()
        checked += 1
    assert checked, "seed 0 with one original per dataset saves at least one edit as PNG"


def test_source_names_the_original(runs: dict[str, Path], data_root: Path) -> None:
    for name in (LOCAL_DIR, RESAVE_DIR):
        with (runs["a"] / name / "index.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                dataset, file = row["source"].split(":", 1)
                assert (data_root / dataset / file).is_file(), row["source"]
