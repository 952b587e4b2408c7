"""Near-duplicates: PDQ's robustness on real pictures, the multi-index table against a full scan, the
keypoint index against a direct count, the search on Postgres with two tenants (no match crosses
tenants), crops found by keypoints, the fallbacks when an index fails, and the search route."""

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from forensics import keypoints, pdq
from service import duplicates
from service.db import session_scope
from service.models import Case, Image
from tests.platform_support import REDIS_URL, bearer, environment, make_tenant, postgres_database

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PICTURES = ["cvip_copymove/authentic/D3_im1.png", "noso_copymove/authentic/01.png", "casia2_samples/authentic/Au_ani_00001.jpg"]


def _picture(name: str) -> PILImage.Image:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"reference images not found at {path}")
    return PILImage.open(path).convert("RGB")


def _luma(picture: PILImage.Image) -> np.ndarray:
    return pdq.luminance(np.asarray(picture))


def _jpeg(picture: PILImage.Image, quality: int) -> PILImage.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _nearest(original: PILImage.Image, copy: PILImage.Image) -> int:
    """The query's side: the copy's eight dihedral hashes against the original's stored hash."""
    stored = pdq.pdq_hash(_luma(original)).digest
    return min(pdq.distance(stored, h.digest) for h in pdq.dihedral_hashes(_luma(copy)))


def test_hash_is_the_reference_layout() -> None:
    picture = _picture(PICTURES[0])
    h = pdq.pdq_hash(_luma(picture))
    assert len(h.digest) == 32 and len(h.hex) == 64
    assert bin(int(h.hex, 16)).count("1") in range(120, 129)  # above the median: half the bits, less ties
    assert 0 <= h.quality <= 100 and h.quality >= pdq.MIN_QUALITY
    assert pdq.from_chunks(pdq.to_chunks(h.digest)) == h.digest


def _box1d_reference(values: list[float], window: int) -> list[float]:
    """ThreatExchange's ``box1DFloat``, written out: output o is the mean of inputs o - (window - half) .. o + half - 1
    that exist, half = (window + 2) // 2."""
    half, n = (window + 2) // 2, len(values)
    out = []
    for o in range(n):
        inside = values[max(o - (window - half), 0) : min(o + half, n)]
        out.append(sum(inside) / len(inside))
    return out


@pytest.mark.parametrize("shape", [(97, 131), (300, 41), (256, 256)])
def test_grid_is_the_reference_jarosz_filter_then_decimation(shape: tuple[int, int]) -> None:
    rows, cols = shape
    picture = np.random.default_rng(rows).uniform(0, 255, shape)
    buffer = picture.tolist()
    for _ in range(2):  # the reference: along each row, then along each column, twice
        buffer = [_box1d_reference(row, pdq._window(cols)) for row in buffer]
        buffer = [list(c) for c in zip(*[_box1d_reference(list(col), pdq._window(rows)) for col in zip(*buffer)], strict=True)]
    ri = ((np.arange(pdq.GRID) + 0.5) * rows / pdq.GRID).astype(int)
    ci = ((np.arange(pdq.GRID) + 0.5) * cols / pdq.GRID).astype(int)
    expected = np.array(buffer)[np.ix_(ri, ci)]
    assert np.abs(pdq._grid(picture) - expected).max() < 1e-3


@pytest.mark.parametrize("name", PICTURES)
def test_edited_copies_stay_near(name: str) -> None:
    picture = _picture(name)
    w, h = picture.size
    copies = {
        "jpeg_q50": _jpeg(picture, 50),
        "jpeg_q95": _jpeg(picture, 95),
        "resize_50": picture.resize((w // 2, h // 2), PILImage.Resampling.BILINEAR),
        "crop_2": picture.crop((round(0.02 * w), 0, w, h)),
        "mirror": picture.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT),
        "rotate_90": picture.transpose(PILImage.Transpose.ROTATE_90),
        "rotate_180_jpeg": _jpeg(picture.transpose(PILImage.Transpose.ROTATE_180), 75),
    }
    distances = {k: _nearest(picture, v) for k, v in copies.items()}
    assert all(d <= duplicates.MATCH_DISTANCE for d in distances.values()), distances


def test_unrelated_pictures_are_far() -> None:
    hashes = [pdq.pdq_hash(_luma(_picture(n))).digest for n in PICTURES]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert pdq.distance(hashes[i], hashes[j]) > duplicates.MATCH_DISTANCE + 10


def _flip(digest: bytes, bits: list[int]) -> bytes:
    value = int.from_bytes(digest, "big")
    for b in bits:
        value ^= 1 << int(b)
    return value.to_bytes(32, "big")


def test_multi_index_finds_what_a_full_scan_finds() -> None:
    rng = np.random.default_rng(7)
    stored = rng.integers(0, 256, size=(120_000, 32), dtype=np.uint8)
    query = stored[5].tobytes()
    planted = {10: _flip(query, list(range(0, 40, 2))), 11: _flip(query, list(rng.choice(256, 47, replace=False)))}
    for row, digest in planted.items():
        stored[row] = np.frombuffer(digest, dtype=np.uint8)
    index = duplicates.HashIndex()
    index.add(np.arange(1, 100_001), stored[:100_000].tobytes())  # built (more than the tail limit)
    index.add(np.arange(100_001, 120_001), stored[100_000:].tobytes())  # the unsorted tail
    stored[110_000] = np.frombuffer(_flip(query, [1, 2, 3]), dtype=np.uint8)
    index.codes[110_000] = np.frombuffer(stored[110_000].tobytes(), dtype=np.uint64)
    found = index.search([query], duplicates.MATCH_DISTANCE)
    scan = {i + 1: pdq.distance(query, stored[i].tobytes()) for i in range(len(stored))}
    assert found == {k: d for k, d in scan.items() if d <= duplicates.MATCH_DISTANCE}
    assert found[6] == 0 and found[11] == 20 and found[12] == 47 and found[110_001] == 3


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("duplicates")
    with (
        postgres_database() as url,
        environment(
            {
                "DATABASE_URL": url,
                "BROKER_URL": REDIS_URL,
                "FORENSICS_BROKER_KEY_PREFIX": f"forensics-dups-{uuid.uuid4().hex[:8]}:",
                "STORAGE_URL": (home / "storage").as_uri(),
                "FORENSICS_HOME": str(home),
                "FORENSICS_RATE_LIMIT_PER_MINUTE": "0",
            }
        ),
    ):
        duplicates._INDEXES.clear()
        duplicates._KEYPOINT_INDEXES.clear()
        yield
        duplicates._INDEXES.clear()
        duplicates._KEYPOINT_INDEXES.clear()


def _store(tenant_id: uuid.UUID, pictures: dict[str, PILImage.Image]) -> dict[str, uuid.UUID]:
    """One case of the tenant with these pictures, their hashes recorded as the prepare step does."""
    ids: dict[str, uuid.UUID] = {}
    with session_scope() as session:
        case = Case(tenant_id=tenant_id, image_count=len(pictures))
        session.add(case)
        session.flush()
        for position, (name, picture) in enumerate(pictures.items()):
            image = Image(case_id=case.id, position=position, filename=name)
            session.add(image)
            session.flush()
            duplicates.record(session, image, _luma(picture))
            duplicates.record(session, image, _luma(picture))  # a redelivered prepare keeps one row
            ids[name] = image.id
        session.commit()
    return ids


def test_search_within_the_tenant_only(database: None, caplog: pytest.LogCaptureFixture) -> None:
    original, other = _picture(PICTURES[0]), _picture(PICTURES[1])
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    a = _store(tenant_a, {"original.png": original, "other.png": other})
    a2 = _store(tenant_a, {"copy.jpg": _jpeg(original.resize((original.width // 4, original.height // 4)), 70)})
    b = _store(tenant_b, {"theirs.png": original})
    queries, quality = duplicates.hash_queries(_luma(original.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)))
    with session_scope() as session:
        found = duplicates.search(session, tenant_a, queries, quality)
        assert [m.image_id for m in found] == [a["original.png"], a2["copy.jpg"]]
        assert found[0].distance <= 16 and found[1].distance <= duplicates.MATCH_DISTANCE
        assert [m.image_id for m in duplicates.search(session, tenant_b, queries, quality)] == [b["theirs.png"]]
        near = duplicates.near_duplicates_of(session, tenant_a, a["original.png"])
        assert [n["image_id"] for n in near] == [str(a2["copy.jpg"])] and set(near[0]) == {
            "case_id",
            "image_id",
            "filename",
            "distance",
            "first_seen",
            "match",
            "inliers",
            "coverage",
        }
        assert near[0]["match"] == "pdq"
        assert duplicates.near_duplicates_of(session, tenant_a, a["other.png"]) == []
        assert duplicates.near_duplicates_of(session, tenant_b, a["original.png"]) == []  # not B's image

        def broken(*_: object) -> dict[int, int]:
            raise MemoryError("index unavailable")

        with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.WARNING, logger="service.duplicates"):
            patch.setattr(duplicates.HashIndex, "search", broken)
            fallback = duplicates.search(session, tenant_a, queries, quality)
        assert [(m.image_id, m.distance) for m in fallback] == [(m.image_id, m.distance) for m in found]
        assert "index unavailable" in caplog.text


def test_keypoint_index_ranks_by_rare_shared_keys() -> None:
    rng = np.random.default_rng(3)
    stored = [np.unique(rng.integers(0, 1 << 25, 120, dtype=np.uint32)) for _ in range(300)]
    common = np.uint32(12345)
    stored = [np.union1d(keys, [common]) for keys in stored]  # a key every image holds proposes nothing
    query = np.concatenate([stored[7][:40], stored[250][:10], stored[120][:1], [common]]).astype(np.uint32)
    index = duplicates.KeypointIndex()
    index.add(list(range(1, 201)), [k.astype("<u4").tobytes() for k in stored[:200]])
    index.build()
    index.add(list(range(201, 301)), [k.astype("<u4").tobytes() for k in stored[200:]])  # the unsorted tail
    assert len(index) == 300 and index.last_seq == 300
    assert index.candidates(query) == [8, 251]  # seq = position + 1; one shared key is not enough
    assert index.candidates(query, exclude=8) == [251]
    assert index.candidates(np.array([common], dtype=np.uint32)) == []


def test_crops_found_by_keypoints(database: None, caplog: pytest.LogCaptureFixture) -> None:
    original = _picture(PICTURES[0])
    w, h = original.size
    crop = _jpeg(original.crop((w // 10, h // 10, w, h)), 80)
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    a = _store(tenant_a, {"original.png": original, "other.png": _picture(PICTURES[1]), "third.jpg": _picture(PICTURES[2])})
    a2 = _store(tenant_a, {"crop.jpg": crop})
    _store(tenant_b, {"theirs.png": original})
    queries, quality = duplicates.hash_queries(_luma(crop))
    features = keypoints.extract(_luma(crop))
    with session_scope() as session:
        assert duplicates.search(session, tenant_a, queries, quality, exclude=a2["crop.jpg"]) == []  # PDQ alone misses a 10 % crop...
        found = duplicates.search(session, tenant_a, queries, quality, features=features, exclude=a2["crop.jpg"])
        assert [(m.image_id, m.match) for m in found] == [(a["original.png"], "keypoints")]  # ...keypoints find it
        assert (
            found[0].distance > duplicates.MATCH_DISTANCE and found[0].inliers >= 50 and found[0].coverage == pytest.approx(0.81, abs=0.02)
        )
        near = duplicates.near_duplicates_of(session, tenant_a, a["original.png"])
        assert [(n["image_id"], n["match"]) for n in near] == [(str(a2["crop.jpg"]), "keypoints")] and near[0]["coverage"] == 1.0
        assert duplicates.near_duplicates_of(session, tenant_a, a["other.png"]) == []

        def broken(*_: object, **__: object) -> list[int]:
            raise MemoryError("keypoint index unavailable")

        with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.WARNING, logger="service.duplicates"):
            patch.setattr(duplicates.KeypointIndex, "candidates", broken)
            fallback = duplicates.search(session, tenant_a, queries, quality, features=features, exclude=a2["crop.jpg"])
        assert fallback == found and "keypoint index unavailable" in caplog.text


def test_search_route(database: None) -> None:
    from api.main import create_app

    picture = _picture(PICTURES[2])
    tenant, key = make_tenant()
    _, other_key = make_tenant()
    ids = _store(tenant, {"stored.jpg": picture})
    upload = io.BytesIO()
    picture.resize((picture.width // 2, picture.height // 2)).save(upload, "JPEG", quality=80)
    client = TestClient(create_app())
    files = {"image": ("query.jpg", upload.getvalue(), "image/jpeg")}
    response = client.post("/v1/duplicates/search", headers=bearer(key), files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["image_id"] for m in body["matches"]] == [str(ids["stored.jpg"])]
    assert body["max_distance"] == duplicates.MATCH_DISTANCE and len(body["pdq"]) == 64
    other = client.post("/v1/duplicates/search", headers=bearer(other_key), files=files)
    assert other.status_code == 200 and other.json()["matches"] == []
    assert client.post("/v1/duplicates/search", headers=bearer(key), files={"wrong": ("a.jpg", b"x", "image/jpeg")}).status_code == 400
