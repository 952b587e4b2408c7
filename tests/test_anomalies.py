"""Contextual anomalies across a case (service.anomalies) on real EXIF facts and generated cases, and sharing an
image for reverse image search (service.reverse_search, POST .../share, GET /v1/shared/{token})."""

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from forensics.exif import extract_metadata
from forensics.image import load_image
from service import anomalies, reverse_search
from service.models import Case, Image, Tenant
from service.settings import Settings
from tests.platform_support import api_app, bearer, data_file, make_tenant

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
#: Three pictures from one Nikon COOLPIX P6000 in Tuscany on 2008-10-22, one from a Nokia in Helsinki in 2022.
TUSCANY = ("gps/DSCN0010.jpg", "gps/DSCN0012.jpg", "gps/DSCN0042.jpg")
HELSINKI = "mobile/HMD_Nokia_8.3_5G.jpg"
LIMITS = {"max_time_spread_hours": 72.0, "max_distance_km": 50.0, "max_age_days": 30.0}
OLD_OK = LIMITS | {"max_age_days": 1e6}


@cache
def real(name: str) -> dict[str, Any]:
    """The metadata facts the worker stores for a real file of ../shared/data/exif_samples_ianare/jpg."""
    path = data_file("exif_samples_ianare/jpg", name)
    return extract_metadata(load_image(path.read_bytes(), filename=Path(name).name))


def rules(found: dict[str, list[dict[str, Any]]], key: str) -> set[str]:
    return {a["rule"] for a in found[key]}


def test_real_exif_gives_the_facts_the_rules_read() -> None:
    nikon, nokia = real(TUSCANY[0]), real(HELSINKI)
    assert anomalies.camera(nikon) == "NIKON COOLPIX P6000" and anomalies.camera(nokia) == "HMD Global Nokia 8.3 5G"
    assert anomalies.camera(real("Canon_40D.jpg")) == "Canon EOS 40D"  # the model repeats the make
    assert anomalies.capture_time(nikon) == datetime(2008, 10, 22, 16, 28, 39)
    assert anomalies.capture_time(nokia) == datetime(2022, 8, 14, 14, 12, 31)  # the written offset is dropped
    assert anomalies.position(nikon) == pytest.approx((43.4674, 11.8851), abs=1e-3)
    assert anomalies.capture_time(real("Reconyx_HC500_Hyperfire.jpg")) is None and anomalies.position(real("Canon_40D.jpg")) is None


def test_time_spread_gps_and_camera_single_out_the_odd_picture_of_a_real_case() -> None:
    metadata = {name: real(name) for name in (*TUSCANY, HELSINKI)}
    found = anomalies.compute(metadata, OLD_OK, NOW)
    assert all(found[name] == [] for name in TUSCANY)  # 32 minutes and 500 m apart, one camera
    assert rules(found, HELSINKI) == {"time_spread", "gps_distance", "camera"}
    by_rule = {a["rule"]: a for a in found[HELSINKI]}
    spread = by_rule["time_spread"]
    assert spread["limit"] == 72.0 and spread["values"]["captured_at"] == "2022-08-14T14:12:31"
    assert spread["values"]["hours_from_median"] > 13 * 365 * 24 and "after" in spread["message"]
    distance = by_rule["gps_distance"]["values"]
    assert 1900 < distance["distance_km"] < 2300 and distance["latitude"] == pytest.approx(60.1467, abs=1e-3)
    camera = by_rule["camera"]["values"]
    assert camera == {"camera": "HMD Global Nokia 8.3 5G", "case_camera": "NIKON COOLPIX P6000", "case_camera_count": 3, "cameras_named": 4}
    assert anomalies.summary(found) == {"time_spread": 1, "gps_distance": 1, "age": 0, "camera": 1, "duplicate": 0}
    # Wide limits: only the camera, which has no limit to widen.
    wide = anomalies.compute(metadata, {k: 1e6 for k in LIMITS}, NOW)
    assert rules(wide, HELSINKI) == {"camera"} and all(wide[name] == [] for name in TUSCANY)


def test_age_against_the_case_creation_on_real_dates() -> None:
    metadata = {"sony": real("Sony_HDR-HC3.jpg"), "jolla": real("mobile/jolla.jpg")}
    found = anomalies.compute(metadata, {k: 1e6 for k in LIMITS} | {"max_age_days": 30.0}, NOW)
    assert rules(found, "sony") == rules(found, "jolla") == {"age"}
    age = found["sony"][0]
    assert age["values"]["captured_at"] == "2007-06-15T04:42:32" and age["values"]["age_days"] > 7000 and age["limit"] == 30.0
    # A picture taken the day before the case opened is fresh; one alone still gets the age rule.
    fresh = {"dates": {"date_time_original": (NOW - timedelta(days=1)).replace(tzinfo=None).isoformat()}}
    assert anomalies.compute({"fresh": fresh}, LIMITS, NOW) == {"fresh": []}
    assert rules(anomalies.compute({"sony": real("Sony_HDR-HC3.jpg")}, LIMITS, NOW), "sony") == {"age"}


def test_camera_rule_needs_three_cameras_and_a_majority() -> None:
    two = {"a": real(TUSCANY[0]), "b": real(HELSINKI)}
    assert anomalies.compute(two, OLD_OK | {"max_time_spread_hours": 1e6, "max_distance_km": 1e6}, NOW) == {"a": [], "b": []}
    split = {"a": real("Canon_40D.jpg"), "b": real("Nikon_D70.jpg"), "c": real("Sony_HDR-HC3.jpg")}
    found = anomalies.compute(split, {k: 1e6 for k in LIMITS}, NOW)
    assert all(v == [] for v in found.values())  # no majority to differ from


def test_generated_cases_across_the_limits() -> None:
    """A generated case of 9 pictures around a point, taken over two days, plus one far away and late."""
    base = datetime(2026, 11, 30, 12, 0)

    def picture(hours: float, lat: float, lon: float, model: str = "Pixel 8") -> dict[str, Any]:
        return {
            "make": "Google",
            "model": model,
            "dates": {"date_time_original": (base + timedelta(hours=hours)).isoformat()},
            "gps": {"latitude": lat, "longitude": lon},
        }

    metadata = {f"p{i}": picture(i * 5, 48.85 + i * 0.01, 2.35) for i in range(9)}
    metadata["odd"] = picture(24 * 5, 48.85, 2.35 + 1.0, model="iPhone 15")  # 5 days later, ~73 km east
    found = anomalies.compute(metadata, LIMITS, NOW)
    assert rules(found, "odd") == {"time_spread", "gps_distance", "camera"}
    assert all(found[f"p{i}"] == [] for i in range(9))
    assert rules(anomalies.compute(metadata, LIMITS | {"max_distance_km": 100.0}, NOW), "odd") == {"time_spread", "camera"}
    assert rules(anomalies.compute(metadata, LIMITS | {"max_time_spread_hours": 200.0}, NOW), "odd") == {"gps_distance", "camera"}
    # Unreadable dates and an unset receiver's (0, 0) are no facts, not anomalies.
    junk = {"j1": {"dates": {"date_time_original": "2026:11:02 10:11:12"}, "gps": {"latitude": 0, "longitude": 0}}, **metadata}
    assert anomalies.compute(junk, LIMITS, NOW)["j1"] == []


def test_duplicates_are_reported_with_the_matching_image() -> None:
    other = str(uuid.uuid4())
    near = {"a": [{"image_id": other, "case_id": "c", "filename": "copy.jpg", "distance": 4, "same_case": True}]}
    found = anomalies.compute({"a": real(TUSCANY[0]), "b": real(TUSCANY[1])}, OLD_OK, NOW, near)
    assert found["b"] == []
    (dup,) = found["a"]
    assert dup["rule"] == "duplicate" and dup["values"] == {"image_id": other, "case_id": "c", "filename": "copy.jpg", "distance": 4}
    assert "copy.jpg in this case" in dup["message"]
    crop = {
        "image_id": other,
        "case_id": "c",
        "filename": "whole.jpg",
        "distance": 96,
        "match": "keypoints",
        "inliers": 140,
        "coverage": 0.81,
    }
    (dup,) = anomalies.compute({"a": real(TUSCANY[0]), "b": real(TUSCANY[1])}, OLD_OK, NOW, {"a": [crop]})["a"]
    assert dup["values"] == crop and "Shares a region with whole.jpg in an earlier case" in dup["message"]
    assert "140 keypoints" in dup["message"] and "covering 81% of it" in dup["message"]


def test_limits_per_case_override_the_tenant_defaults_which_override_the_settings() -> None:
    settings = Settings(anomaly_max_time_spread_hours=10, anomaly_max_distance_km=20, anomaly_max_age_days=30)
    assert anomalies.resolve_limits(settings) == {"max_time_spread_hours": 10.0, "max_distance_km": 20.0, "max_age_days": 30.0}
    tenant = {"max_distance_km": 5, "max_age_days": None, "unknown": 1}
    case = {"max_age_days": 365}
    assert anomalies.resolve_limits(settings, tenant, case) == {
        "max_time_spread_hours": 10.0,
        "max_distance_km": 5.0,
        "max_age_days": 365.0,
    }


def test_reverse_search_links_and_share_records() -> None:
    links = reverse_search.links("https://news.example/v1/shared/abc?x=1&y=2")
    encoded = "https%3A%2F%2Fnews.example%2Fv1%2Fshared%2Fabc%3Fx%3D1%26y%3D2"
    assert links == {
        "google_lens": f"https://lens.google.com/uploadbyurl?url={encoded}",
        "bing": f"https://www.bing.com/images/search?view=detailv2&iss=sbi&q=imgurl:{encoded}",
        "yandex": f"https://yandex.com/images/search?rpt=imageview&url={encoded}",
        "tineye": f"https://tineye.com/search?url={encoded}",
    }
    image = Image(id=uuid.uuid4(), filename="a.jpg")
    assert reverse_search.report(image) == {
        "shared": False,
        "shared_at": None,
        "shared_by": None,
        "links": {},
        "note": reverse_search.NOT_SHARED,
    }
    token = reverse_search.share(image, "fk_abc", 900, now=NOW)
    assert image.shared_at == NOW and image.shared_by == "fk_abc" and image.share_expires_at == NOW + timedelta(seconds=900)
    assert reverse_search.live_token(image, NOW + timedelta(seconds=899)) == token
    assert reverse_search.live_token(image, NOW + timedelta(seconds=900)) is None
    again = reverse_search.share(image, "fk_other", 900, now=NOW + timedelta(hours=1))
    assert again != token and image.shared_at == NOW and image.shared_by == "fk_abc"  # the first share is the one recorded
    assert reverse_search.report(image)["note"] == reverse_search.EXPIRED


def test_migration_0009_on_sqlite(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from service.db import migrate

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    engine = create_engine(url)
    try:
        columns = {t: {c["name"] for c in inspect(engine).get_columns(t)} for t in ("tenants", "cases", "images")}
    finally:
        engine.dispose()
    assert "anomaly_limits" in columns["tenants"] and "anomaly_limits" in columns["cases"]
    assert {"shared_at", "shared_by", "share_token", "share_expires_at"} <= columns["images"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with api_app(tmp_path_factory.mktemp("anomalies")) as app:
        yield app


def _stored_case(tenant_id: uuid.UUID) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """A completed case of the four real pictures (Tuscany x3, Helsinki), originals stored, scores set."""
    from service.db import session_scope
    from service.storage import get_storage, original_key

    storage = get_storage()
    case = Case(id=uuid.uuid4(), tenant_id=tenant_id, label="real", status="completed", image_count=4, created_at=NOW)
    ids: dict[str, uuid.UUID] = {}
    for position, name in enumerate((*TUSCANY, HELSINKI)):
        data = data_file("exif_samples_ianare/jpg", name).read_bytes()
        sha = f"{position:064x}"
        key = original_key(case.id, sha)
        storage.put_bytes(key, data, "image/jpeg")
        image = Image(
            id=uuid.uuid4(),
            case_id=case.id,
            position=position,
            filename=Path(name).name,
            status="completed",
            sha256=sha,
            storage_key=key,
            format="jpeg",
            width=640,
            height=480,
            file_info={"format": "jpeg", "width": 640, "height": 480, "bytes": len(data)},
            image_metadata=real(name),
            tamper_score=12.5 + position,
            verdict="likely_authentic",
            created_at=NOW,
            completed_at=NOW,
        )
        case.images.append(image)
        ids[name] = image.id
    with session_scope() as session:
        session.add(case)
        session.commit()
    return case.id, ids


def test_case_status_and_reports_carry_the_anomalies_and_the_score_is_untouched(app: Any) -> None:
    from fastapi.testclient import TestClient

    from service.db import session_scope

    tenant_id, key = make_tenant()
    case_id, ids = _stored_case(tenant_id)
    with TestClient(app) as client:
        status = client.get(f"/v1/cases/{case_id}", headers=bearer(key))
        assert status.status_code == 200, status.text
        body = status.json()
        # Case created 2026, pictures from 2008 and 2022: all four are older than the default 30 days.
        assert body["anomalies"] == {"time_spread": 1, "gps_distance": 1, "age": 4, "camera": 1, "duplicate": 0}
        by_file = {i["filename"]: i for i in body["images"]}
        assert by_file["HMD_Nokia_8.3_5G.jpg"]["anomalies"] == ["age", "camera", "gps_distance", "time_spread"]
        assert [i["tamper_score"] for i in body["images"]] == [12.5, 13.5, 14.5, 15.5]
        report = client.get(f"/v1/cases/{case_id}/images/{ids[HELSINKI]}", headers=bearer(key)).json()
        assert {a["rule"] for a in report["anomalies"]} == {"age", "camera", "gps_distance", "time_spread"}
        assert report["tamper_score"] == 15.5
        assert all(set(a) == {"rule", "message", "values", "limit"} for a in report["anomalies"])
        pdf = client.get(f"/v1/cases/{case_id}/images/{ids[HELSINKI]}/report.pdf", headers=bearer(key))
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        dossier = client.get(f"/v1/cases/{case_id}/report.zip", headers=bearer(key))
        assert dossier.status_code == 200, dossier.text
        with zipfile.ZipFile(io.BytesIO(dossier.content)) as archive:
            summary = json.loads(archive.read("batch_summary.json"))
            assert summary["anomalies"] == body["anomalies"]
            assert summary["images"][3]["anomalies"] == ["age", "camera", "gps_distance", "time_spread"]
            inner = json.loads(archive.read(f"{summary['images'][3]['folder']}/forensic_report.json"))
            assert {a["rule"] for a in inner["anomalies"]} == {"age", "camera", "gps_distance", "time_spread"}
    with session_scope() as session:
        scores = session.scalars(select(Image.tamper_score).where(Image.case_id == case_id).order_by(Image.position)).all()
        assert scores == [12.5, 13.5, 14.5, 15.5]


def test_case_creation_stores_the_limits_over_the_tenant_defaults(app: Any) -> None:
    from fastapi.testclient import TestClient

    from service.db import session_scope

    tenant_id, key = make_tenant()
    with session_scope() as session:
        session.get_one(Tenant, tenant_id).anomaly_limits = {"max_distance_km": 5.0, "max_age_days": 10.0}
        session.commit()
    data = data_file("exif_samples_ianare/jpg", TUSCANY[0]).read_bytes()
    with TestClient(app) as client:
        answer = client.post(
            "/v1/cases",
            headers=bearer(key),
            files=[("images", ("a.jpg", io.BytesIO(data), "image/jpeg"))],
            data={"anomaly_max_age_days": "400"},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["anomalies"] == dict.fromkeys(anomalies.RULES, 0)
        bad = client.post(
            "/v1/cases",
            headers=bearer(key),
            files=[("images", ("a.jpg", io.BytesIO(data), "image/jpeg"))],
            data={"anomaly_max_age_days": "-1"},
        )
        assert bad.status_code == 400
    with session_scope() as session:
        limits = session.scalar(select(Case.anomaly_limits).where(Case.id == uuid.UUID(answer.json()["id"])))
    assert limits == {"max_time_spread_hours": 72.0, "max_distance_km": 5.0, "max_age_days": 400.0}


def test_sharing_for_reverse_search_is_per_image_recorded_and_tenant_only(app: Any) -> None:
    from fastapi.testclient import TestClient

    tenant_id, key = make_tenant()
    _, other_key = make_tenant()
    case_id, ids = _stored_case(tenant_id)
    image_id, untouched = ids[HELSINKI], ids[TUSCANY[0]]
    share = f"/v1/cases/{case_id}/images/{image_id}/share"
    with TestClient(app) as client:
        before = client.get(f"/v1/cases/{case_id}/images/{image_id}", headers=bearer(key)).json()["reverse_search"]
        assert before["shared"] is False and before["links"] == {} and "share" in before["note"]
        assert client.post(share, headers=bearer(other_key)).status_code == 404
        assert client.post(share).status_code == 401
        assert client.post(f"/v1/cases/{case_id}/images/{uuid.uuid4()}/share", headers=bearer(key)).status_code == 404
        shared = client.post(share, headers=bearer(key))
        assert shared.status_code == 200, shared.text
        answer = shared.json()
        assert answer["shared"] is True and answer["shared_at"] and answer["shared_by"]
        assert set(answer["links"]) == set(reverse_search.SERVICES)
        after = client.get(f"/v1/cases/{case_id}/images/{image_id}", headers=bearer(key)).json()["reverse_search"]
        assert after["shared"] is True and after["links"] == answer["links"]
        other = client.get(f"/v1/cases/{case_id}/images/{untouched}", headers=bearer(key)).json()["reverse_search"]
        assert other["shared"] is False and other["links"] == {}
        # The public URL serves the original without a key, until it expires.
        from urllib.parse import unquote

        public = unquote(answer["links"]["tineye"].split("url=", 1)[1])
        served = client.get(public)
        assert served.status_code == 200 and served.content == data_file("exif_samples_ianare/jpg", HELSINKI).read_bytes()
        assert client.get(public[:-3] + "xyz").status_code == 404
        from service.db import session_scope

        with session_scope() as session:
            session.get_one(Image, image_id).share_expires_at = datetime.now(UTC) - timedelta(seconds=1)
            session.commit()
        assert client.get(public).status_code == 404
        expired = client.get(f"/v1/cases/{case_id}/images/{image_id}", headers=bearer(key)).json()["reverse_search"]
        assert expired["shared"] is True and expired["links"] == {} and expired["note"] == reverse_search.EXPIRED


def test_web_image_page_shows_the_anomalies_and_shares_with_the_session_csrf_token(app: Any) -> None:
    import re

    from fastapi.testclient import TestClient

    tenant_id, key = make_tenant()
    case_id, ids = _stored_case(tenant_id)
    image_id = ids[HELSINKI]
    with TestClient(app) as client:
        form = client.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        signed = client.post("/sign-in", data={"api_key": key, "csrf": csrf.group(1), "next": "/"}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        listing = client.get(f"/cases/{case_id}")
        assert listing.status_code == 200 and "context anomalies: time spread 1, gps distance 1, age 4, camera 1" in listing.text
        assert "Context: age, camera, gps distance, time spread" in listing.text
        page = client.get(f"/cases/{case_id}/images/{image_id}")
        assert page.status_code == 200, page.text
        assert "Against the rest of the case" in page.text and "gps distance" in page.text and "NIKON COOLPIX P6000" in page.text
        assert "Search the web for this picture" in page.text and "Not shared" in page.text and "tineye.com" not in page.text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert token is not None
        share = f"/v1/cases/{case_id}/images/{image_id}/share"
        assert client.post(share).status_code == 403  # the session's CSRF token is required
        assert client.post(share, headers={"X-CSRF-Token": token.group(1)}).status_code == 200
        after = client.get(f"/cases/{case_id}/images/{image_id}")
        assert "Shared for reverse search" in after.text and "tineye.com/search?url=" in after.text
