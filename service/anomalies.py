"""Contextual anomalies across a case: what one image says about itself that does not fit the others.

The rules read the metadata facts extracted per image (``Image.image_metadata``, :func:`forensics.exif.extract_metadata`)
and compare them across the case: capture times spread wider than the case's limit, GPS positions far from
the case's median position, pictures taken long before the case was opened, a camera that differs from the
case's majority, and near-duplicates (the same picture twice in the case, or already in the newsroom's earlier cases).

They are information for the editor, never evidence of tampering: nothing here touches the tamper score.
They depend on every image of the case, so they are computed when a report or the case status is read
(cheap: a pass over the metadata plus one near-duplicate look-up per hashed image), not by the workers.
"""

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from service import duplicates
from service.models import Case, Image, Tenant
from service.settings import Settings

#: The limits a tenant or a case may set, with the settings field giving each one's default.
LIMITS: dict[str, str] = {
    "max_time_spread_hours": "anomaly_max_time_spread_hours",
    "max_distance_km": "anomaly_max_distance_km",
    "max_age_days": "anomaly_max_age_days",
}
#: The rules, in the order they are reported.
RULES = ("time_spread", "gps_distance", "age", "camera", "duplicate")
#: The camera rule needs a majority to differ from: at least this many images naming a camera.
MIN_CAMERAS = 3
EARTH_RADIUS_KM = 6371.0088


def resolve_limits(settings: Settings, *overrides: Mapping[str, Any] | None) -> dict[str, float]:
    """The settings' defaults, overridden in turn by each mapping given (tenant defaults, then the case's own);
    unknown keys and None values are ignored so that a partial override keeps the other limits."""
    limits = {name: float(getattr(settings, field)) for name, field in LIMITS.items()}
    for override in overrides:
        for name, value in (override or {}).items():
            if name in LIMITS and value is not None:
                limits[name] = float(value)
    return limits


#: The largest value of each limit a tenant or a case may set (the API's multipart and JSON
#: forms and ``forensics-admin`` all check these); a distance beyond the Earth's circumference means nothing.
MAX_LIMITS: dict[str, float] = {"max_time_spread_hours": 1e6, "max_distance_km": 40_000.0, "max_age_days": 1e6}


def set_tenant_defaults(settings: Settings, tenant: Tenant, changes: Mapping[str, float | None], *, clear: bool = False) -> dict[str, float]:
    """Change a tenant's default limits (the caller commits): each value given replaces the tenant's,
    ``clear`` first drops them all (back to the settings' defaults). Returns the limits that new
    cases of the tenant will get, before their own."""
    for name, value in changes.items():
        if name not in LIMITS:
            raise ValueError(f"unknown anomaly limit {name!r}; known: {', '.join(LIMITS)}")
        if value is not None and not 0 < value <= MAX_LIMITS[name]:
            raise ValueError(f"{name} must be a positive number up to {MAX_LIMITS[name]:.0f}")
    current = {} if clear else dict(tenant.anomaly_limits or {})
    current.update({name: float(value) for name, value in changes.items() if value is not None})
    tenant.anomaly_limits = current or None
    return resolve_limits(settings, tenant.anomaly_limits)


def capture_time(metadata: Mapping[str, Any] | None) -> datetime | None:
    """When the picture was taken, by its own account: the original date, else the creation date.

    Times are compared as the camera's wall clock (an offset, when written, is dropped): most cameras write
    no offset, and mixing the two would shift some pictures by hours; a spread limit of hours tolerates this."""
    dates = (metadata or {}).get("dates") or {}
    for key in ("date_time_original", "create_date"):
        text = dates.get(key)
        if not text:
            continue
        try:
            return datetime.fromisoformat(text).replace(tzinfo=None)
        except (TypeError, ValueError):
            continue
    return None


def position(metadata: Mapping[str, Any] | None) -> tuple[float, float] | None:
    gps = (metadata or {}).get("gps") or {}
    lat, lon = gps.get("latitude"), gps.get("longitude")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None  # (0, 0) is what an unset receiver writes, not a place anybody photographs
    return float(lat), float(lon)


def camera(metadata: Mapping[str, Any] | None) -> str | None:
    """``make model`` as one normalised name (the model often repeats the make, as "Canon" + "Canon EOS 40D")."""
    make = str((metadata or {}).get("make") or "").strip()
    model = str((metadata or {}).get("model") or "").strip()
    if model.lower().startswith(make.lower()):
        make = ""
    name = " ".join(part for part in (make, model) if part)
    return name or None


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _anomaly(rule: str, message: str, values: dict[str, Any], limit: float | str | None) -> dict[str, Any]:
    return {"rule": rule, "message": message, "values": values, "limit": limit}


def compute(
    metadata: Mapping[str, Mapping[str, Any] | None],
    limits: Mapping[str, float],
    case_created: datetime,
    near: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every image's anomalies (keyed as ``metadata``: image id as text -> its metadata facts).

    ``near`` maps an image to its near-duplicates (:func:`service.duplicates.near_duplicates_of` entries) that count:
    the case's other images and the images the tenant had before the case.
    """
    found: dict[str, list[dict[str, Any]]] = {key: [] for key in metadata}
    times = {key: t for key, m in metadata.items() if (t := capture_time(m)) is not None}
    if len(times) >= 2:
        seconds = statistics.median(t.replace(tzinfo=UTC).timestamp() for t in times.values())
        middle = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        limit = limits["max_time_spread_hours"]
        for key, t in times.items():
            hours = abs((t - middle).total_seconds()) / 3600
            if hours > limit:
                found[key].append(
                    _anomaly(
                        "time_spread",
                        f"Taken {hours:,.1f} hours {'before' if t < middle else 'after'} the middle of the case's pictures "
                        f"(limit {limit:g} hours).",
                        {"captured_at": t.isoformat(), "case_median": middle.isoformat(), "hours_from_median": round(hours, 1)},
                        limit,
                    )
                )
    places = {key: p for key, m in metadata.items() if (p := position(m)) is not None}
    if len(places) >= 2:
        centre = (statistics.median(p[0] for p in places.values()), statistics.median(p[1] for p in places.values()))
        limit = limits["max_distance_km"]
        for key, p in places.items():
            km = haversine_km(p, centre)
            if km > limit:
                found[key].append(
                    _anomaly(
                        "gps_distance",
                        f"Taken {km:,.1f} km from where the case's other pictures were taken (limit {limit:g} km).",
                        {
                            "latitude": p[0],
                            "longitude": p[1],
                            "case_latitude": round(centre[0], 6),
                            "case_longitude": round(centre[1], 6),
                            "distance_km": round(km, 1),
                        },
                        limit,
                    )
                )
    opened = case_created.astimezone(UTC).replace(tzinfo=None) if case_created.tzinfo else case_created
    limit = limits["max_age_days"]
    for key, t in times.items():
        days = (opened - t).total_seconds() / 86400
        if days > limit:
            found[key].append(
                _anomaly(
                    "age",
                    f"Taken {days:,.0f} days before the case was opened (limit {limit:g} days).",
                    {"captured_at": t.isoformat(), "case_created_at": opened.isoformat(), "age_days": round(days, 1)},
                    limit,
                )
            )
    cameras = {key: c for key, m in metadata.items() if (c := camera(m)) is not None}
    if len(cameras) >= MIN_CAMERAS:
        (common, count), *_ = Counter(c.lower() for c in cameras.values()).most_common(1)
        if count * 2 > len(cameras):
            majority = next(c for c in cameras.values() if c.lower() == common)
            for key, c in cameras.items():
                if c.lower() != common:
                    found[key].append(
                        _anomaly(
                            "camera",
                            f"Taken with a {c}; {count} of the case's {len(cameras)} pictures naming a camera were taken with a {majority}.",
                            {"camera": c, "case_camera": majority, "case_camera_count": count, "cameras_named": len(cameras)},
                            f"at least {MIN_CAMERAS} pictures naming a camera, a majority with one camera",
                        )
                    )
    for key, matches in (near or {}).items():
        for match in matches:
            where = "this case" if match.get("same_case") else "an earlier case"
            if match.get("match") == "keypoints":
                message = (
                    f"Shares a region with {match['filename']} in {where}: {match['inliers']} keypoints on one transform, "
                    f"covering {match['coverage']:.0%} of it (a crop, an edited copy, or a shot from the same spot)."
                )
            else:
                message = f"The same picture as {match['filename']} in {where} (PDQ distance {match['distance']})."
            found.setdefault(key, []).append(
                _anomaly(
                    "duplicate",
                    message,
                    {k: match[k] for k in ("image_id", "case_id", "filename", "distance", "match", "inliers", "coverage") if match.get(k) is not None},
                    duplicates.MATCH_DISTANCE,
                )
            )
    return found


def summary(found: Mapping[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Per rule, how many images of the case raise it (every rule listed, 0 included, so that a reader sees what was checked)."""
    counts = dict.fromkeys(RULES, 0)
    for anomalies in found.values():
        for rule in {a["rule"] for a in anomalies}:
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def _counted_duplicates(session: Session, case: Case, images: Iterable[Image]) -> dict[str, list[dict[str, Any]]]:
    """Near-duplicates that count as anomalies: another image of this case, or one the tenant stored before the case
    was opened (images stored later are left to the report's ``near_duplicates``, so the case status, cached until
    its own images change, stays true)."""
    near: dict[str, list[dict[str, Any]]] = {}
    for image in images:
        matches = []
        for match in duplicates.near_duplicates_of(session, case.tenant_id, image.id):
            same = match["case_id"] == str(case.id)
            if same or datetime.fromisoformat(match["first_seen"]) < case.created_at:
                matches.append(match | {"same_case": same})
        if matches:
            near[str(image.id)] = matches
    return near


def for_case(session: Session, settings: Settings, case: Case) -> dict[str, list[dict[str, Any]]]:
    """The anomalies of each image of ``case`` (its images loaded), by image id as text. Only images with metadata
    facts (read by the worker) take part; the others get an empty list."""
    read = [i for i in case.images if i.image_metadata is not None]
    limits = resolve_limits(settings, case.anomaly_limits)
    found = compute({str(i.id): i.image_metadata for i in read}, limits, case.created_at, _counted_duplicates(session, case, read))
    return {str(i.id): found.get(str(i.id), []) for i in case.images}
