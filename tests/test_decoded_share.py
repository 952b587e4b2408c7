"""Decoded images shared between worker processes (``service.decoded.SharedDecodes``): what a
process maps back is the same image, every method finds the same, and the share stays a bounded
cache (eviction, discard, refusal of entries larger than the budget)."""

import hashlib
import io
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from forensics import load_image
from forensics.image import DEFAULT_MAX_PIXELS
from forensics.methods import REGISTRY
from forensics.methods.integrity import IntegrityMethod
from service.decoded import CACHE_BYTES, LAYOUT, MAX_AGE_SECONDS, MAX_BYTES_PER_PIXEL, DecodeCache, SharedDecodes
from service.models import Image
from service.settings import Settings
from service.storage import LocalStorage
from tests.conftest import jpeg_bytes


def _rgba_png(astronaut: np.ndarray) -> bytes:
    rgba = np.dstack([astronaut[:256, :256], np.tile(np.arange(256, dtype=np.uint8), (256, 1))])
    buf = io.BytesIO()
    PILImage.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def test_a_shared_jpeg_maps_back_identical_and_methods_agree(tmp_path: Path, astronaut: np.ndarray) -> None:
    original = load_image(jpeg_bytes(astronaut, quality=85), filename="astronaut.jpg")
    share = SharedDecodes(tmp_path, 1 << 30)
    share.save(original)
    mapped = share.load(original.sha256)
    assert mapped is not None
    assert mapped.data == original.data and mapped.filename == "astronaut.jpg" and mapped.container == original.container
    assert np.array_equal(mapped.rgb, original.rgb) and np.array_equal(mapped.luma, original.luma)
    assert mapped.jpeg is not None and original.jpeg is not None
    assert all(np.array_equal(a, b) for a, b in zip(mapped.jpeg.coefficients, original.jpeg.coefficients, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(mapped.jpeg.quant_tables, original.jpeg.quant_tables, strict=True))
    assert not mapped.rgb.flags.writeable and not mapped.jpeg.coefficients[0].flags.writeable
    for method in REGISTRY.values():
        a, b = method.run(original), method.run(mapped)
        assert (a.status, a.score, a.details) == (b.status, b.score, b.details), method.name


def test_alpha_and_text_survive_and_a_missing_entry_is_none(tmp_path: Path, astronaut: np.ndarray) -> None:
    original = load_image(_rgba_png(astronaut), filename="alpha.png")
    share = SharedDecodes(tmp_path, 1 << 30)
    assert share.load(original.sha256) is None
    share.save(original)
    mapped = share.load(original.sha256)
    assert mapped is not None and mapped.alpha is not None and mapped.jpeg is None
    assert np.array_equal(mapped.alpha, original.alpha) and dict(mapped.text) == dict(original.text)
    share.discard(original.sha256)
    assert share.load(original.sha256) is None and not any(tmp_path.iterdir())


def test_the_share_evicts_the_oldest_and_refuses_what_cannot_fit(tmp_path: Path, astronaut: np.ndarray) -> None:
    first = load_image(jpeg_bytes(astronaut[:300, :300]), filename="first.jpg")
    second = load_image(jpeg_bytes(astronaut[100:400, 100:400]), filename="second.jpg")
    one_entry = first.rgb.nbytes + len(first.data) + sum(c.nbytes for c in first.jpeg.coefficients)  # type: ignore[union-attr]
    share = SharedDecodes(tmp_path, int(one_entry * 1.5))
    share.save(first)
    share.save(second)
    assert share.load(first.sha256) is None, "the older entry is evicted to make room"
    assert share.load(second.sha256) is not None
    large = load_image(jpeg_bytes(astronaut), filename="large.jpg")
    share.save(large)
    assert share.load(large.sha256) is None, "an entry larger than the whole budget is not shared"
    assert share.load(second.sha256) is not None, "and evicts nothing"


def test_entries_left_by_a_dead_analysis_expire(tmp_path: Path, astronaut: np.ndarray) -> None:
    share = SharedDecodes(tmp_path, 1 << 30)
    stale = load_image(jpeg_bytes(astronaut[:200, :200]), filename="stale.jpg")
    share.save(stale)
    old = time.time() - MAX_AGE_SECONDS - 60
    os.utime(tmp_path / f"{stale.sha256}-{LAYOUT}", (old, old))
    fresh = load_image(jpeg_bytes(astronaut[:300, :300]), filename="fresh.jpg")
    share.save(fresh)
    assert share.load(stale.sha256) is None and share.load(fresh.sha256) is not None


def test_a_folder_others_may_write_is_never_trusted(tmp_path: Path, astronaut: np.ndarray) -> None:
    """Entries are unpickled: a share folder that is not private to this user (as one planted in
    the world-writable /dev/shm by another user would be) turns sharing off."""
    folder = tmp_path / "planted"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    share = SharedDecodes(folder, 1 << 30)
    image = load_image(jpeg_bytes(astronaut), filename="a.jpg")
    share.save(image)
    assert share.load(image.sha256) is None and not any(folder.iterdir())


def test_a_zero_budget_turns_sharing_off(tmp_path: Path, astronaut: np.ndarray) -> None:
    share = SharedDecodes(tmp_path / "off", 0)
    image = load_image(jpeg_bytes(astronaut), filename="a.jpg")
    share.save(image)
    assert share.load(image.sha256) is None and not (tmp_path / "off").exists()


def test_the_same_bytes_under_another_name_keep_their_own_name(tmp_path: Path, astronaut: np.ndarray) -> None:
    """Decodes are keyed by content, but a file's name is its own: integrity compares the name's
    extension with the real format, so a JPEG uploaded again as ``.png`` must be seen as ``.png``."""
    data = jpeg_bytes(astronaut)
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("original", data, "image/jpeg")
    cache = DecodeCache(Settings(home=tmp_path, decode_share_folder=tmp_path / "share"))
    sha = hashlib.sha256(data).hexdigest()
    first = cache.get(Image(sha256=sha, storage_key="original", filename="photo.jpg"), storage)
    again = cache.get(Image(sha256=sha, storage_key="original", filename="photo.png"), storage)
    assert (first.filename, again.filename) == ("photo.jpg", "photo.png")
    assert again.rgb is first.rgb, "the pixels are not decoded again"
    assert IntegrityMethod().run(again).score > IntegrityMethod().run(first).score


def test_a_process_keeps_older_decodes_only_within_its_byte_budget(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two small images stay cached; when a new one would not fit beside the old within
    CACHE_BYTES, or its size is not known yet (its prepare), the old go before it is decoded, so
    a pool process never holds two images near the pixel limit beside a method's work."""
    storage = LocalStorage(tmp_path / "storage")
    images = []
    for quality in (80, 90):
        data = jpeg_bytes(astronaut, quality=quality)
        storage.put_bytes(f"q{quality}", data, "image/jpeg")
        images.append(Image(sha256=hashlib.sha256(data).hexdigest(), storage_key=f"q{quality}", filename=f"q{quality}.jpg"))
    settings = Settings(home=tmp_path, decode_share_bytes=0)

    def first_kept_after_second(width: int | None) -> bool:
        cache = DecodeCache(settings)
        first = cache.get(images[0], storage)
        images[1].width, images[1].height = (width, 512) if width else (None, None)
        cache.get(images[1], storage)
        return cache.get(images[0], storage) is first

    assert first_kept_after_second(512), "two small decodes fit together"
    assert not first_kept_after_second(None), "a prepare (size unknown) starts alone"
    monkeypatch.setattr("service.decoded.CACHE_BYTES", 20 * 512 * 512)
    assert not first_kept_after_second(512), "the older one goes: it would not fit beside the new one"


def test_the_budget_keeps_two_24_mp_images_and_one_at_the_pixel_limit_alone() -> None:
    assert 2 * 24_000_000 * MAX_BYTES_PER_PIXEL <= CACHE_BYTES < DEFAULT_MAX_PIXELS * MAX_BYTES_PER_PIXEL


def test_an_entry_of_another_layout_is_never_read(tmp_path: Path, astronaut: np.ndarray) -> None:
    """Entries are named with the decoded image's layout: one written by a version whose classes had
    other fields (here: named as before layouts existed) is ignored, not unpickled into a broken object."""
    share = SharedDecodes(tmp_path, 1 << 30)
    decoded = load_image(jpeg_bytes(astronaut, 90))
    share.save(decoded)
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert entry.name == f"{decoded.sha256}-{LAYOUT}" and share.load(decoded.sha256) is not None
    entry.rename(tmp_path / decoded.sha256)
    assert share.load(decoded.sha256) is None


@pytest.mark.parametrize(
    ("part", "content"),
    [
        ("adq.pickle", pickle.dumps({"double_compressed": True})),  # an analysis of another shape: no "map"
        ("image.pickle", pickle.dumps(Settings)),  # not a decoded image
        ("image.pickle", b"cno_such_module\nDecodedImage\n."),  # a class from a module that is gone
    ],
)
def test_an_entry_that_cannot_be_read_is_decoded_again(tmp_path: Path, astronaut: np.ndarray, part: str, content: bytes) -> None:
    """The share is a cache: whatever an entry holds (left by another version, or damaged), a reader
    that cannot use it decodes the image itself instead of failing its method or its join."""
    twice = jpeg_bytes(np.asarray(PILImage.open(io.BytesIO(jpeg_bytes(astronaut, quality=70)))), quality=90)
    share = SharedDecodes(tmp_path, 1 << 30)
    share.save(load_image(twice, filename="twice.jpg"))
    sha = hashlib.sha256(twice).hexdigest()
    entry = tmp_path / f"{sha}-{LAYOUT}"
    assert (entry / "adq.pickle").exists()
    (entry / part).write_bytes(content)
    assert share.load(sha) is None
    cache = DecodeCache(Settings(home=tmp_path, decode_share_folder=tmp_path))
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("original", twice, "image/jpeg")
    decoded = cache.get(Image(sha256=sha, storage_key="original", filename="twice.jpg"), storage)
    assert decoded.sha256 == sha and REGISTRY["jpeg"].run(decoded).status.value == "ok"


def test_the_double_quantization_analysis_is_shared_with_the_decode(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forensics import jpeg_history

    twice = jpeg_bytes(np.asarray(PILImage.open(io.BytesIO(jpeg_bytes(astronaut, quality=70)))), quality=90)
    original = load_image(twice, filename="twice.jpg")
    share = SharedDecodes(tmp_path, 1 << 30)
    share.save(original)
    expected = jpeg_history.aligned_double_quantization(original)
    assert expected["double_compressed"]

    def never(*_args: object) -> None:
        raise AssertionError("the analysis was computed again")

    monkeypatch.setattr(jpeg_history, "_adq", never)
    mapped = share.load(original.sha256)
    assert mapped is not None and mapped is not original
    shared = jpeg_history.aligned_double_quantization(mapped)
    assert np.array_equal(shared["map"], expected["map"]) and not shared["map"].flags.writeable
    assert {k: v for k, v in shared.items() if k != "map"} == {k: v for k, v in expected.items() if k != "map"}
    assert REGISTRY["jpeg"].run(mapped).details == REGISTRY["jpeg"].run(original).details


def test_the_clip_embedding_is_shared_with_the_decode_unless_no_method_reads_it(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forensics.learn import clip_encoder

    original = load_image(jpeg_bytes(astronaut), filename="a.jpg")
    SharedDecodes(tmp_path / "on", 1 << 30).save(original)
    SharedDecodes(tmp_path / "off", 1 << 30, embed=False).save(original)
    expected = clip_encoder.embed_image(original)

    def never(*_args: object) -> None:
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(clip_encoder, "embed", never)
    mapped = SharedDecodes(tmp_path / "on", 1 << 30).load(original.sha256)
    assert mapped is not None and mapped is not original
    shared = clip_encoder.embed_image(mapped)
    assert np.array_equal(shared, expected) and not shared.flags.writeable
    assert REGISTRY["recapture"].run(mapped).details == REGISTRY["recapture"].run(original).details
    assert not (tmp_path / "off" / f"{original.sha256}-{LAYOUT}" / "clip.npy").exists()
    unshared = SharedDecodes(tmp_path / "off", 1 << 30).load(original.sha256)
    with pytest.raises(AssertionError, match="the encoder ran again"):
        clip_encoder.embed_image(unshared)
