"""Write the synthetic datasets: ``synth_local`` (local edits) and ``synth_resave`` (whole re-saves).

Why: the reference benchmarks are small and each has one kind of forgery and one compression
history, so a detector tuned on them learns their quirks. Generating forgeries from genuine
photos of many cameras, with known masks and every parameter recorded, follows the synthetic
training and test data of ManTra-Net (Wu, AbdAlmageed & Natarajan, CVPR 2019) and CAT-Net
(Kwon et al., WACV 2021 / IJCV 2022).

Layout: each folder has ``index.csv`` in the layout of ``../shared/data``
(``file,label,mask_file,kind,source``; masks 8-bit PNG, 255 = tampered) and ``manifest.json``
(seed, counts, and per file: edit, encoder, quality, donor, crop). ``source`` is
``<dataset>:<original file>`` so that an evaluation can group by original and hold out whole
datasets.

- ``synth_local``: each original (cropped to ``max_side``, corner on the 8x8 grid) gets a few
  local edits, each saved by a drawn encoder; for every encoder used, the same crop is also
  saved unedited by that encoder as an ``authentic`` row, so the re-save alone separates nothing.
- ``synth_resave``: the JPEG originals themselves (``authentic``, referenced by relative path,
  never copied) and each one decoded and saved whole by an editor's JPEG encoder, with its
  EXIF and ICC profile kept (``edited``, kind ``unknown``). Only JPEG originals are used so
  that the file format does not separate the classes.

Donors for splices are chosen by rendezvous hashing (Thaler & Ravishankar, IEEE/ACM ToN 1998)
over the selected originals, preferring another dataset (another compression history): adding
an original changes a splice's donor only where the new original wins.
"""

import csv
import io
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from forensics.synth.edits import KINDS, LOCAL_EDITS, NEEDS_DONOR, Edited
from forensics.synth.encoders import EncoderSpec, draw_encoder, encode
from forensics.synth.sources import Original, aligned_crop, list_originals, load_rgb, seed_sequence, select_originals, stable_hash

LOCAL_DIR = "synth_local"
RESAVE_DIR = "synth_resave"
INDEX_FIELDS = ("file", "label", "mask_file", "kind", "source")
#: Random streams per original: 0 crop, 1 local plan, 2 re-save, 3+ one per local edit.
_CROP, _PLAN, _RESAVE, _EDIT0 = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Settings:
    """One generation run."""

    data_root: Path
    out: Path
    seed: int = 0
    per_source: int | None = 25
    max_side: int = 1536
    edits_per_original: int = 2


@dataclass(slots=True)
class Written:
    """Rows and manifest entries one original produced, per output folder."""

    rows: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {LOCAL_DIR: [], RESAVE_DIR: []})
    files: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {LOCAL_DIR: {}, RESAVE_DIR: {}})
    skipped: list[str] = field(default_factory=list)

    def add(self, folder: str, file: str, label: str, source: str, params: dict[str, Any], kind: str = "", mask_file: str = "") -> None:
        self.rows[folder].append({"file": file, "label": label, "mask_file": mask_file, "kind": kind, "source": source})
        self.files[folder][file] = params


def _rng(seed: int, original: Original, stream: int) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, original.key).spawn(stream + 1)[stream])


def _crop_box(original: Original, seed: int, max_side: int) -> tuple[int, int, int, int]:
    return aligned_crop(original.height, original.width, max_side, _rng(seed, original, _CROP))


@lru_cache(maxsize=12)
def _cropped(original: Original, seed: int, max_side: int) -> np.ndarray:
    """The original's pixels inside its seeded crop (cached: donors are reused)."""
    top, left, h, w = _crop_box(original, seed, max_side)
    return np.ascontiguousarray(load_rgb(original.path)[top : top + h, left : left + w])


def _donor_fits(host: tuple[int, int], donor: Original, max_side: int) -> bool:
    """A donor's crop must span at least half the host's shorter side to give a 3-15 % region."""
    return min(donor.height, donor.width, max_side) >= 0.5 * min(host)


def _donors(host: Original, pool: tuple[Original, ...], seed: int, edit_index: int) -> Iterator[Original]:
    """Candidate donors, best first: another dataset first, then by rendezvous hash."""
    others = (o for o in pool if o.key != host.key)
    yield from sorted(others, key=lambda o: (o.dataset == host.dataset, stable_hash(seed, "donor", host.key, edit_index, o.key)))


class NoDonorError(Exception):
    """No selected original is large enough to give a splice donor."""


def _pick_donor(
    host: Original, shape: tuple[int, int], pool: tuple[Original, ...], s: Settings, edit_index: int
) -> tuple[Original, np.ndarray]:
    for donor in _donors(host, pool, s.seed, edit_index):
        if _donor_fits(shape, donor, s.max_side):
            try:
                return donor, _cropped(donor, s.seed, s.max_side)
            except (OSError, SyntaxError):  # Pillow's decode errors: try the next donor
                continue
    raise NoDonorError(f"no donor fits {host.key}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _mask_png(mask: np.ndarray) -> bytes:
    """A ground-truth mask as 8-bit greyscale PNG, 255 = tampered."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _local(original: Original, pool: tuple[Original, ...], s: Settings, out: Written) -> None:
    """The local edits of one original and its unedited twins, written under ``synth_local``."""
    folder = s.out / LOCAL_DIR
    top, left, h, w = _crop_box(original, s.seed, s.max_side)
    crop = {"top": top, "left": left, "height": h, "width": w, "original_height": original.height, "original_width": original.width}
    pixels = _cropped(original, s.seed, s.max_side)
    plan = _rng(s.seed, original, _PLAN)
    names = [str(n) for n in plan.choice(list(LOCAL_EDITS), size=min(s.edits_per_original, len(LOCAL_EDITS)), replace=False)]
    specs = [draw_encoder(plan) for _ in names]
    edits: list[tuple[str, EncoderSpec, Edited, dict[str, Any]]] = []
    for i, (name, spec) in enumerate(zip(names, specs, strict=True)):
        rng = _rng(s.seed, original, _EDIT0 + i)
        params: dict[str, Any] = {"edit": name, "kind": KINDS[name], "crop": crop, "encoder": spec.to_dict()}
        if name in NEEDS_DONOR:
            donor, donor_pixels = _pick_donor(original, pixels.shape[:2], pool, s, i)
            edited = LOCAL_EDITS[name](pixels, donor_pixels, rng)
            donor_box = dict(zip(("top", "left", "height", "width"), _crop_box(donor, s.seed, s.max_side), strict=True))
            params["donor"] = {"source": donor.key, "crop": donor_box}
        else:
            edited = LOCAL_EDITS[name](pixels, rng)
        edits.append((f"{original.stem}__e{i}_{name}", spec, edited, {**params, **edited.params}))
    for stem, spec, edited, params in edits:
        file, mask_file = f"tampered/{stem}{spec.suffix}", f"masks/{stem}.png"
        _write(folder / file, encode(edited.pixels, spec))
        _write(folder / mask_file, _mask_png(edited.mask))
        out.add(LOCAL_DIR, file, "tampered", original.key, params, params["kind"], mask_file)
    for spec in dict.fromkeys(specs):
        file = f"authentic/{original.stem}__{spec.tag}{spec.suffix}"
        _write(folder / file, encode(pixels, spec))
        out.add(LOCAL_DIR, file, "authentic", original.key, {"edit": None, "crop": crop, "encoder": spec.to_dict()})


def _resave(original: Original, s: Settings, out: Written) -> None:
    """The whole original re-saved by an editor's JPEG encoder, and the original by reference."""
    folder = s.out / RESAVE_DIR
    spec = draw_encoder(_rng(s.seed, original, _RESAVE), png_share=0.0)
    with Image.open(original.path) as im:
        exif, icc = im.info.get("exif"), im.info.get("icc_profile")
        pixels = np.asarray(im.convert("RGB"))
    file = f"edited/{original.stem}__{spec.tag}.jpg"
    _write(folder / file, encode(pixels, spec, exif=exif, icc_profile=icc))
    out.add(
        RESAVE_DIR,
        file,
        "edited",
        original.key,
        {"edit": "resave", "encoder": spec.to_dict(), "metadata_kept": sorted(k for k, v in (("exif", exif), ("icc_profile", icc)) if v)},
        "unknown",
    )
    reference = Path(os.path.relpath(original.path.resolve(), folder.resolve())).as_posix()
    out.add(RESAVE_DIR, reference, "authentic", original.key, {"edit": None, "original": True})


def _process(original: Original, pool: tuple[Original, ...], s: Settings) -> Written:
    """Everything derived from one original.

    An original that fails to decode, or finds no donor, is reported and yields nothing:
    every edit is computed before anything is written.
    """
    out = Written()
    try:
        _local(original, pool, s, out)
    except (OSError, SyntaxError, NoDonorError) as exc:
        return Written(skipped=[f"{original.key}: {type(exc).__name__}: {exc}"])
    if original.format == "JPEG":
        _resave(original, s, out)
    return out


def _counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(row["label"], Counter())[row["kind"] or "-"] += 1
    return {label: dict(sorted(c.items())) for label, c in sorted(counts.items())}


def _finish(
    folder: Path, rows: list[dict[str, str]], files: dict[str, dict[str, Any]], header: dict[str, Any]
) -> dict[str, dict[str, int]]:
    rows = sorted(rows, key=lambda r: r["file"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=INDEX_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    counts = _counts(rows)
    manifest = {**header, "counts": counts, "files": {r["file"]: files[r["file"]] for r in rows}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return counts


def _merge(into: Written, part: Written) -> None:
    for name in (LOCAL_DIR, RESAVE_DIR):
        into.rows[name].extend(part.rows[name])
        into.files[name].update(part.files[name])
    into.skipped.extend(part.skipped)


def synthesize(settings: Settings, workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Generate both datasets under ``settings.out``; returns a summary (counts, skipped originals).

    The output folders are recreated. The result depends only on the settings (not on
    ``workers``): every random draw is seeded per original.
    """
    s = settings
    originals, skipped = list_originals(Path(s.data_root))
    pool = tuple(select_originals(originals, s.per_source, s.seed))
    for name in (LOCAL_DIR, RESAVE_DIR):
        shutil.rmtree(s.out / name, ignore_errors=True)
    merged = Written()
    bar = tqdm(total=len(pool), desc="synthesize", unit="original", file=sys.stderr, disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as executor:
            results = executor.map(_process, pool, [pool] * len(pool), [s] * len(pool), chunksize=2)
            for result in results:
                _merge(merged, result)
                bar.update()
    else:
        for original in pool:
            _merge(merged, _process(original, pool, s))
            bar.update()
    bar.close()
    header = {
        "generator": "forensics.synth",
        "seed": s.seed,
        "per_source": s.per_source,
        "max_side": s.max_side,
        "edits_per_original": s.edits_per_original,
        "originals": len(pool),
        "originals_per_dataset": dict(Counter(o.dataset for o in pool)),
        "skipped": skipped + merged.skipped,
    }
    counts = {name: _finish(s.out / name, merged.rows[name], merged.files[name], header) for name in (LOCAL_DIR, RESAVE_DIR)}
    return {**header, "counts": counts}
