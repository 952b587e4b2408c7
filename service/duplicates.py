"""Near-duplicates: each image's PDQ hash (:mod:`forensics.pdq`) stored in the database, searched
within the tenant's whole history.

Search order: exact hashes first (an indexed equality lookup in SQL), then the tenant's
in-process index, a multi-index hash table (Norouzi, Punjani & Fleet, "Fast Search in Hamming
Space with Multi-Index Hashing", CVPR 2012): the 256 bits are cut into 16 chunks of 16 bits,
and a hash within distance d of the query agrees with it within floor(d / 16) bits on at least
one chunk (pigeonhole), so only the rows found by looking up the chunks' neighbours (1 + 16 +
120 = 137 values a chunk at radius 2) are compared bit by bit. With d = 47 that is about 2,200
lookups a query and, at a million uniformly spread hashes, about 30,000 candidates: a few
milliseconds, where a full scan of a million rows takes 30 ms or more on a loaded machine
(bench/bench_duplicates.py). The index is per tenant, loaded from the database on first use
and brought up to date from ``image_hashes.seq`` before each search; every match is resolved
back through SQL filtered on the tenant, so one tenant never sees another's images.

If the index fails (memory, a bug) the search degrades to a scan of the tenant's hashes read
from SQL, with a warning: slower, never a failed request or case.

PDQ is a global hash: a crop of a few per cent of a side moves it as far as an unrelated
picture's. Crops are found by a second stage on local features (:mod:`forensics.keypoints`): a
per-tenant inverted index from keypoint keys to images (:class:`KeypointIndex`, also loaded by
``seq``) proposes the images that share the most rare keys, and each of the best
:data:`CANDIDATES` is checked geometrically against its stored keypoints. Such a match is reported
with ``match: "keypoints"``, its inlier pairs and the share of the stored picture the query
covers. If that index fails, candidates come from a scan of the stored keys in SQL.
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from forensics import keypoints, pdq
from service.models import Case, Image, ImageHash

logger = logging.getLogger(__name__)

#: Hamming distance (of 256 bits) at or below which two pictures are reported as near-duplicates.
#: Chosen on the reference sets (bench/bench_duplicates.py): every JPEG re-encode at q50-95 and
#: 97.8 % of the resizes to 25 % fall within it; the pairs of distinct reference pictures within it
#: come from sets with several shots of one scene. ThreatExchange's default is 31, stricter.
MATCH_DISTANCE = 47
#: Bits per chunk of the multi-index table, and the chunks.
CHUNK_BITS = 16
CHUNKS = pdq.BITS // CHUNK_BITS
#: The chunk neighbours at each radius (XOR masks), radius 0 to 2.
_MASKS = {
    r: np.array([sum(1 << b for b in bits) for k in range(r + 1) for bits in combinations(range(CHUNK_BITS), k)], dtype=np.uint16)
    for r in range(3)
}
#: A tail of unsorted rows bigger than this is merged in (a rebuild of a million rows takes a few seconds).
_TAIL_LIMIT = 20_000
#: Images proposed by the keypoint index that are checked geometrically, and the keys a proposal shares at least.
CANDIDATES = 8
MIN_SHARED_KEYS = 2
#: A key held by more than this share of the tenant's images (and by more than 50) proposes nothing:
#: it comes from flat or repetitive patches that many pictures have.
COMMON_KEY_SHARE = 0.05


def _codes(digests: bytes) -> np.ndarray:
    """Concatenated 32-byte digests -> (N, 4) uint64 (byte order does not matter for XOR and popcount)."""
    return np.frombuffer(digests, dtype=np.uint64).reshape(-1, 4)


def _words(codes: np.ndarray) -> np.ndarray:
    """(N, 4) uint64 -> (N, 16) uint16: the 16 chunks of each hash."""
    return codes.view(np.uint16).reshape(-1, CHUNKS)


class HashIndex:
    """A multi-index hash table of 256-bit hashes, with an unsorted tail for rows added since the last build.

    The table is one bucket array for the 16 chunks together (compressed rows: ``offsets`` into
    ``rows``, bucket ``chunk * 65536 + value``), so a search is two array look-ups per probe and
    one gather, all in numpy, with no per-chunk loop."""

    def __init__(self) -> None:
        self.codes = np.zeros((0, 4), dtype=np.uint64)
        self.keys = np.zeros(0, dtype=np.int64)
        self.last_seq = 0
        self._offsets = np.zeros(CHUNKS * (1 << CHUNK_BITS) + 1, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._built = 0

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: np.ndarray, digests: bytes) -> None:
        if not len(keys):
            return
        self.codes = np.concatenate([self.codes, _codes(digests)])
        self.keys = np.concatenate([self.keys, np.asarray(keys, dtype=np.int64)])
        self.last_seq = max(self.last_seq, int(self.keys[-1]))
        if len(self.keys) - self._built > _TAIL_LIMIT:
            self.build()

    def build(self) -> None:
        n = len(self.keys)
        buckets = (_words(self.codes).T.astype(np.int64) + (np.arange(CHUNKS, dtype=np.int64) << CHUNK_BITS)[:, None]).reshape(-1)
        order = np.argsort(buckets, kind="stable")
        self._rows = (order % max(n, 1)).astype(np.int32)
        counts = np.bincount(buckets, minlength=CHUNKS << CHUNK_BITS)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._built = n

    def search(self, queries: list[bytes], max_distance: int) -> dict[int, int]:
        """Key -> smallest distance to any of ``queries``, for the rows within ``max_distance``."""
        if not len(self.keys) or not queries:
            return {}
        q = _codes(b"".join(queries))
        radius = max_distance // CHUNKS
        if radius > 2:
            return _verify(self.codes, self.keys, np.arange(len(self.keys)), q, max_distance)
        found = _verify(self.codes, self.keys, np.arange(self._built, len(self.keys)), q, max_distance)
        if not self._built:
            return found
        chunk_base = (np.arange(CHUNKS, dtype=np.int64) << CHUNK_BITS)[None, :, None]
        probes = (chunk_base + (_words(q).astype(np.int64)[:, :, None] ^ _MASKS[radius].astype(np.int64)[None, None, :])).reshape(
            len(q), -1
        )
        starts, ends = self._offsets[probes], self._offsets[probes + 1]
        lengths = (ends - starts).reshape(-1)
        total = int(lengths.sum())
        if not total:
            return found
        positions = np.repeat(starts.reshape(-1) - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        rows = self._rows[positions]
        # candidates come grouped by query (probes are query-major): each group is compared with its own query only
        bounds = np.concatenate([[0], np.cumsum(lengths.reshape(len(q), -1).sum(axis=1))])
        for k in range(len(q)):
            group = rows[bounds[k] : bounds[k + 1]]
            distance = np.bitwise_count(self.codes[group] ^ q[k]).sum(axis=1, dtype=np.uint16)
            hit = distance <= max_distance
            for key, d in zip(self.keys[group[hit]].tolist(), distance[hit].tolist(), strict=True):
                if d < found.get(key, pdq.BITS + 1):
                    found[key] = d
        return found


def _verify(codes: np.ndarray, keys: np.ndarray, rows: np.ndarray, q: np.ndarray, max_distance: int) -> dict[int, int]:
    if not len(rows):
        return {}
    picked = codes[rows]
    best = np.full(len(rows), pdq.BITS + 1, dtype=np.int64)
    for query in q:
        best = np.minimum(best, np.bitwise_count(picked ^ query).sum(axis=1, dtype=np.int64))
    hit = best <= max_distance
    return dict(zip(keys[rows][hit].tolist(), best[hit].tolist(), strict=True))


class KeypointIndex:
    """An inverted index from keypoint keys (:func:`forensics.keypoints.stored_keys`) to the images that
    hold them: one sorted array of keys and one of owners (positions in ``seqs``), with an unsorted
    tail for images added since the last build. Eight bytes a key, about 1 KB an image."""

    def __init__(self) -> None:
        self.seqs = np.zeros(0, dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint32)
        self.owners = np.zeros(0, dtype=np.int32)
        self.last_seq = 0
        self._built = 0

    def __len__(self) -> int:
        return len(self.seqs)

    def add(self, seqs: list[int], blobs: list[bytes]) -> None:
        if not seqs:
            return
        keys = [np.frombuffer(b, dtype="<u4") for b in blobs]
        owners = np.repeat(np.arange(len(self.seqs), len(self.seqs) + len(seqs), dtype=np.int32), [len(k) for k in keys])
        self.seqs = np.concatenate([self.seqs, np.asarray(seqs, dtype=np.int64)])
        self.keys = np.concatenate([self.keys, *keys]).astype(np.uint32, copy=False)
        self.owners = np.concatenate([self.owners, owners])
        self.last_seq = max(self.last_seq, int(self.seqs[-1]))
        if len(self.keys) - self._built > _TAIL_LIMIT * keypoints.INDEXED:
            self.build()

    def build(self) -> None:
        """Merge the tail into the sorted part: the tail is sorted and inserted, one pass over the
        sorted arrays (about a second at a million images) rather than sorting them again (40 s)."""
        order = np.argsort(self.keys[self._built :], kind="stable")
        tail_keys, tail_owners = self.keys[self._built :][order], self.owners[self._built :][order]
        at = np.searchsorted(self.keys[: self._built], tail_keys, "right")
        self.keys = np.insert(self.keys[: self._built], at, tail_keys)
        self.owners = np.insert(self.owners[: self._built], at, tail_owners)
        self._built = len(self.keys)

    def candidates(self, query_keys: np.ndarray, limit: int = CANDIDATES, exclude: int | None = None) -> list[int]:
        """The seqs of the images sharing the most rare keys with the query, best first: each shared key
        weighs log(images / images holding it) (inverse document frequency, Sivic & Zisserman 2003)."""
        n = len(self.seqs)
        if not n or not len(query_keys):
            return []
        wanted = np.unique(query_keys.astype(np.uint32))
        built, tail = self.keys[: self._built], self.keys[self._built :]
        lo, hi = np.searchsorted(built, wanted, "left"), np.searchsorted(built, wanted, "right")
        in_tail = np.isin(tail, wanted)
        tail_counts = np.zeros(len(wanted), dtype=np.int64)
        if in_tail.any():
            present, counts = np.unique(tail[in_tail], return_counts=True)
            tail_counts[np.searchsorted(wanted, present)] = counts
        df = hi - lo + tail_counts
        usable = (df > 0) & (df <= max(50, COMMON_KEY_SHARE * n))
        weight = np.where(usable, np.log(n / np.maximum(df, 1)), 0.0)
        lengths = np.where(usable, hi - lo, 0)
        total = int(lengths.sum())
        positions = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        owners = np.concatenate([self.owners[positions], self.owners[self._built :][in_tail]])
        weights = np.concatenate([np.repeat(weight, lengths), weight[np.searchsorted(wanted, tail[in_tail])]])
        if not len(owners):
            return []
        score = np.bincount(owners, weights=weights, minlength=n)
        shared = np.bincount(owners, weights=(weights > 0).astype(np.float64), minlength=n)
        score[shared < MIN_SHARED_KEYS] = 0
        if exclude is not None:
            score[self.seqs == exclude] = 0
        best = np.argsort(-score, kind="stable")[:limit]
        return self.seqs[best[score[best] > 0]].tolist()


_INDEXES: dict[uuid.UUID, HashIndex] = {}
_KEYPOINT_INDEXES: dict[uuid.UUID, KeypointIndex] = {}
_LOCK = threading.Lock()
#: Rows read from the database per query while loading an index.
_PAGE = 100_000


def _pages(session: Session, tenant_id: uuid.UUID, column: Any, after: int) -> Iterator[list[Row[Any]]]:
    """The tenant's rows after ``after`` in ``seq`` order, a page at a time: ``seq`` and ``value`` (``column``)."""
    while True:
        rows = list(
            session.execute(
                select(ImageHash.seq, column.label("value"))
                .where(ImageHash.tenant_id == tenant_id, ImageHash.seq > after)
                .order_by(ImageHash.seq)
                .limit(_PAGE)
            ).all()
        )
        if rows:
            yield rows
            after = rows[-1].seq
        if len(rows) < _PAGE:
            return


def _index(session: Session, tenant_id: uuid.UUID) -> HashIndex:
    """The tenant's index, with the rows stored since it was last read."""
    with _LOCK:
        index = _INDEXES.setdefault(tenant_id, HashIndex())
        for rows in _pages(session, tenant_id, ImageHash.pdq, index.last_seq):
            index.add(np.array([r.seq for r in rows], dtype=np.int64), b"".join(r.value for r in rows))
        return index


def _keypoint_index(session: Session, tenant_id: uuid.UUID) -> KeypointIndex:
    """The tenant's keypoint index, with the rows stored since it was last read (images stored before
    keypoints existed have none, and are skipped)."""
    with _LOCK:
        index = _KEYPOINT_INDEXES.setdefault(tenant_id, KeypointIndex())
        for rows in _pages(session, tenant_id, ImageHash.keypoint_keys, index.last_seq):
            kept = [r for r in rows if r.value]
            index.add([r.seq for r in kept], [r.value for r in kept])
            index.last_seq = max(index.last_seq, rows[-1].seq)
        return index


def _sql_candidates(session: Session, tenant_id: uuid.UUID, query_keys: np.ndarray, exclude: int | None) -> list[int]:
    """The fallback: the stored keys read from SQL a page at a time, images ranked by the keys they share."""
    wanted, shared = np.unique(query_keys), {}
    for rows in _pages(session, tenant_id, ImageHash.keypoint_keys, 0):
        for r in rows:
            count = int(np.isin(np.frombuffer(r.value, dtype="<u4"), wanted).sum()) if r.value else 0
            if count >= MIN_SHARED_KEYS and r.seq != exclude:
                shared[r.seq] = count
    return sorted(shared, key=lambda seq: -shared[seq])[:CANDIDATES]


def _region_matches(
    session: Session, tenant_id: uuid.UUID, features: keypoints.Features, exclude: uuid.UUID | None
) -> dict[int, keypoints.RegionMatch]:
    """Stored images that share a region with the query (crops, and copies PDQ misses): candidates from
    the keypoint index, each checked geometrically against its stored keypoints."""
    query_keys = keypoints.index_keys(features.descriptors)
    excluded = None if exclude is None else session.scalar(select(ImageHash.seq).where(ImageHash.image_id == exclude))
    try:
        seqs = _keypoint_index(session, tenant_id).candidates(query_keys, exclude=excluded)
    except Exception:  # noqa: BLE001 - any failure of the index degrades to the SQL scan
        logger.warning("keypoint index unavailable; scanning the tenant's keypoint keys in SQL", exc_info=True)
        seqs = _sql_candidates(session, tenant_id, query_keys, excluded)
    if not seqs:
        return {}
    rows = session.execute(
        select(ImageHash.seq, ImageHash.keypoints).where(ImageHash.tenant_id == tenant_id, ImageHash.seq.in_(seqs))
    ).all()
    found = {}
    for r in rows:
        if r.keypoints and (region := keypoints.match(keypoints.Features.from_bytes(r.keypoints), features)) is not None:
            found[r.seq] = region
    return found


def _sql_scan(session: Session, tenant_id: uuid.UUID, queries: list[bytes], max_distance: int) -> dict[int, int]:
    """The fallback: every hash of the tenant read from SQL and compared (a page at a time)."""
    q, found = _codes(b"".join(queries)), {}
    for rows in _pages(session, tenant_id, ImageHash.pdq, 0):
        keys = np.array([r.seq for r in rows], dtype=np.int64)
        found |= _verify(_codes(b"".join(r.value for r in rows)), keys, np.arange(len(rows)), q, max_distance)
    return found


@dataclass(frozen=True)
class Match:
    """A stored image showing the same picture: found by its PDQ hash (``match`` "pdq") or by shared
    keypoints on one transform (``match`` "keypoints": a crop, or a copy PDQ missed), with the inlier
    pairs and the share of the stored picture the query covers. ``distance`` is the PDQ distance either way."""

    case_id: uuid.UUID
    image_id: uuid.UUID
    filename: str
    distance: int
    first_seen: datetime
    match: str = "pdq"
    inliers: int | None = None
    coverage: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": str(self.case_id),
            "image_id": str(self.image_id),
            "filename": self.filename,
            "distance": self.distance,
            "first_seen": self.first_seen.isoformat(),
            "match": self.match,
            "inliers": self.inliers,
            "coverage": self.coverage,
        }


def search(
    session: Session,
    tenant_id: uuid.UUID | None,
    queries: list[bytes],
    quality: int,
    *,
    features: keypoints.Features | None = None,
    max_distance: int = MATCH_DISTANCE,
    exclude: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Match]:
    """The tenant's images whose hash is within ``max_distance`` of any of ``queries`` (a picture's eight
    dihedral hashes), nearest first, then those that share a region with the picture's keypoints
    (``features``: crops), most inliers first. A query below PDQ's quality floor (a flat, nearly
    blank picture, whose bits are noise) is matched exactly only."""
    if tenant_id is None or not queries:
        return []
    distances = {
        seq: 0 for seq in session.scalars(select(ImageHash.seq).where(ImageHash.tenant_id == tenant_id, ImageHash.pdq.in_(queries))).all()
    }
    if quality >= pdq.MIN_QUALITY and max_distance > 0:
        try:
            near = _index(session, tenant_id).search(queries, max_distance)
        except Exception:  # noqa: BLE001 - any failure of the index degrades to the SQL scan
            logger.warning("near-duplicate index unavailable; scanning the tenant's hashes in SQL", exc_info=True)
            near = _sql_scan(session, tenant_id, queries, max_distance)
        distances = near | distances
    regions = _region_matches(session, tenant_id, features, exclude) if features is not None and len(features) else {}
    if not distances and not regions:
        return []
    rows = session.execute(
        select(ImageHash.seq, ImageHash.pdq, ImageHash.image_id, ImageHash.case_id, ImageHash.created_at, Image.filename)
        .join(Image, Image.id == ImageHash.image_id)
        .where(ImageHash.tenant_id == tenant_id, ImageHash.seq.in_([*distances, *regions]))
    ).all()
    matches = []
    for r in rows:
        if r.image_id == exclude:
            continue
        if r.seq in distances:
            matches.append(Match(r.case_id, r.image_id, r.filename, distances[r.seq], r.created_at))
        else:
            region = regions[r.seq]
            distance = min(pdq.distance(r.pdq, q) for q in queries)
            matches.append(Match(r.case_id, r.image_id, r.filename, distance, r.created_at, "keypoints", region.inliers, region.coverage))
    matches.sort(key=lambda m: (m.match != "pdq", m.distance if m.match == "pdq" else -(m.inliers or 0), m.first_seen))
    return matches[:limit]


def hash_queries(luma: np.ndarray) -> tuple[list[bytes], int]:
    """A picture's eight dihedral hashes (the first is the picture's own) and its quality."""
    hashes = pdq.dihedral_hashes(luma)
    return [h.digest for h in hashes], hashes[0].quality


def record(session: Session, image: Image, luma: np.ndarray) -> None:
    """Store an image's hashes and keypoints (once; a redelivered prepare keeps the first). Called by the prepare step."""
    tenant_id = session.scalar(select(Case.tenant_id).where(Case.id == image.case_id))
    if tenant_id is None or session.scalar(select(ImageHash.seq).where(ImageHash.image_id == image.id)) is not None:
        return
    digests, quality = hash_queries(luma)
    features = keypoints.extract(luma)
    session.add(
        ImageHash(
            image_id=image.id,
            case_id=image.case_id,
            tenant_id=tenant_id,
            pdq=digests[0],
            variants=b"".join(digests[1:]),
            quality=quality,
            keypoints=features.to_bytes(),
            keypoint_keys=keypoints.stored_keys(features).astype("<u4").tobytes(),
        )
    )


def near_duplicates_of(session: Session, tenant_id: uuid.UUID | None, image_id: uuid.UUID) -> list[dict[str, Any]]:
    """The report's ``near_duplicates``: the tenant's other images near this one (computed when the report
    is read, so that images stored later appear too)."""
    row = session.scalars(select(ImageHash).where(ImageHash.image_id == image_id, ImageHash.tenant_id == tenant_id)).first()
    if row is None or tenant_id is None:
        return []
    queries = [row.pdq] + [row.variants[i : i + 32] for i in range(0, len(row.variants), 32)]
    features = keypoints.Features.from_bytes(row.keypoints) if row.keypoints else None
    return [m.as_dict() for m in search(session, tenant_id, queries, row.quality, features=features, exclude=image_id)]
