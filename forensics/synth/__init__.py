"""Seeded, reproducible synthetic manipulations of genuine photos, with exact masks.

Why: to measure and tune the engine on many realistic forgeries whose ground truth is known,
beyond the few hundred images of the public benchmarks. The recipe - local edits of real
camera originals, re-saved by common encoders - follows the synthetic data of ManTra-Net
(Wu, AbdAlmageed & Natarajan, CVPR 2019) and CAT-Net (Kwon et al., WACV 2021 / IJCV 2022).

Modules, one job each: :mod:`~forensics.synth.sources` (which originals, decoding, aligned
crops, seeding), :mod:`~forensics.synth.regions` (shapes, feathering, compositing),
:mod:`~forensics.synth.edits` (the six local edits), :mod:`~forensics.synth.encoders` (JPEG
and PNG savers), :mod:`~forensics.synth.photoshop` (Photoshop tables recovered from the
reference data) and :mod:`~forensics.synth.build` (writes the datasets). The command line is
``scripts/synthesize.py``.
"""

from forensics.synth.build import LOCAL_DIR, RESAVE_DIR, Settings, synthesize
from forensics.synth.edits import (
    KINDS,
    LOCAL_EDITS,
    NEEDS_DONOR,
    Edited,
    clone_stamp,
    color_edit,
    inpaint,
    resampled_paste,
    retouch_blur,
    splice,
)
from forensics.synth.encoders import EncoderSpec, PhotoshopTable, draw_encoder, encode, load_photoshop_tables
from forensics.synth.photoshop import PHOTOSHOP_TABLES_PATH, collect_photoshop_tables, write_photoshop_tables
from forensics.synth.sources import SOURCE_DATASETS, Original, aligned_crop, list_originals, load_rgb, select_originals

__all__ = [
    "KINDS",
    "LOCAL_DIR",
    "LOCAL_EDITS",
    "NEEDS_DONOR",
    "PHOTOSHOP_TABLES_PATH",
    "RESAVE_DIR",
    "SOURCE_DATASETS",
    "Edited",
    "EncoderSpec",
    "Original",
    "PhotoshopTable",
    "Settings",
    "aligned_crop",
    "clone_stamp",
    "collect_photoshop_tables",
    "color_edit",
    "draw_encoder",
    "encode",
    "inpaint",
    "list_originals",
    "load_photoshop_tables",
    "load_rgb",
    "resampled_paste",
    "retouch_blur",
    "select_originals",
    "splice",
    "synthesize",
    "write_photoshop_tables",
]
