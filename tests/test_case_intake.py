"""The create-case flow called directly, without HTTP, on Postgres and Redis (the HTTP edge is in test_integrations.py).

Messages are captured instead of sent, so each test sees exactly what would be enqueued.
"""

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from service import idempotency, ingest, intake, queue
from service.db import session_scope
from service.errors import Refused
from service.intake import Answer, CaseRequest
from service.models import Case, Image, ImageStatus
from service.settings import get_settings
from service.storage import get_storage
from service.tenants import Principal
from tests.platform_support import REDIS_URL, environment, make_tenant, postgres_database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("intake")
    with postgres_database() as url, environment({
        "DATABASE_URL": url,
        "BROKER_URL": REDIS_URL,
        "FORENSICS_BROKER_KEY_PREFIX": f"forensics-intake-{uuid.uuid4().hex[:8]}:",
        "STORAGE_URL": (home / "storage").as_uri(),
        "FORENSICS_HOME": str(home),
    }):
        yield


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    messages: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(queue, "_send", lambda name, args: messages.extend((name, a) for a in args))
    return messages


def _principal(images_per_day: int | None = None) -> Principal:
    tenant_id, key = make_tenant()
    return Principal(tenant_id, "tenant", key[:12], None, images_per_day, None)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _received(folder: Path, name: str, data: bytes) -> intake.Intake:
    """A file as the API receives it: on disk, judged by its first bytes."""
    path = folder / name
    path.write_bytes(data)
    return ingest.judge(name, path, len(data), hashlib.sha256(data).hexdigest(), data[:64])


def _render(case: Case) -> Answer:
    return Answer(202, json.dumps({"id": str(case.id), "images": len(case.images)}), {"Location": f"/v1/cases/{case.id}"})


def _create(principal: Principal, request: CaseRequest, key: str | None = None) -> Answer:
    with session_scope() as session:
        return intake.create_case(session, get_storage(), get_settings(), principal, request, key=key, render=_render)


def _cases(tenant_id: uuid.UUID) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Case).where(Case.tenant_id == tenant_id)) or 0


def test_a_case_is_created_enqueued_and_replayed_for_its_key(database: None, sent: list, tmp_path: Path) -> None:
    principal = _principal()
    files = (_received(tmp_path, "a.png", _png(1)), _received(tmp_path, "b.png", _png(2)), _received(tmp_path, "c.txt", b"not an image"))
    request = CaseRequest(fingerprint="one", label="batch", files=files)
    answer = _create(principal, request, key="k1")
    case_id = uuid.UUID(json.loads(answer.body)["id"])
    assert answer.status == 202 and not answer.replayed
    with session_scope() as session:
        images = list(session.scalars(select(Image).where(Image.case_id == case_id).order_by(Image.position)))
    assert [i.status for i in images] == [ImageStatus.QUEUED, ImageStatus.QUEUED, ImageStatus.FAILED]
    assert images[2].error_code == "INVALID_FORMAT"
    assert sorted(args[0] for name, args in sent if name == queue.PREPARE_IMAGE) == sorted(str(i.id) for i in images[:2])
    again = _create(principal, request, key="k1")
    assert again.replayed and (again.status, again.body, again.headers) == (answer.status, answer.body, answer.headers)
    assert _cases(principal.tenant_id) == 1 and len(sent) == 2  # nothing created or sent twice
    with pytest.raises(idempotency.Mismatch):
        _create(principal, CaseRequest(fingerprint="two", files=files[:1]), key="k1")


def test_over_the_quota_nothing_is_created_and_the_slots_and_key_are_released(database: None, sent: list) -> None:
    principal = _principal(images_per_day=1)
    storage = get_storage()
    with session_scope() as session:
        slots = ingest.create_slots(session, storage, principal.tenant_id, [("a.png", 100_000), ("b.png", 100_000)], get_settings())
    for seed, slot in enumerate(slots):
        storage.put_bytes(slot.upload.storage_key, _png(seed), "application/octet-stream")
    upload_ids = tuple(slot.upload.id for slot in slots)
    with pytest.raises(Refused) as refused:
        _create(principal, CaseRequest(fingerprint="both", upload_ids=upload_ids), key="k2")
    assert refused.value.code == "QUOTA_EXCEEDED" and refused.value.retry_after is not None and refused.value.retry_after > 0
    assert _cases(principal.tenant_id) == 0 and not sent
    with session_scope() as session:
        assert all(ingest.pending_upload(session, principal.tenant_id, u) is not None for u in upload_ids)
    # the key was released: the same key with a request within the quota makes the case, from a released slot
    answer = _create(principal, CaseRequest(fingerprint="one", upload_ids=upload_ids[:1]), key="k2")
    assert not answer.replayed and json.loads(answer.body)["images"] == 1 and len(sent) == 1
    with session_scope() as session:
        assert ingest.pending_upload(session, principal.tenant_id, upload_ids[0]) is None


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (CaseRequest(fingerprint="empty"), "NO_FILE"),
        (CaseRequest(fingerprint="refused", files=(intake.Intake("x.bin", None, 3, None, error_code="INVALID_FORMAT", error_detail="?"),)),
         "INVALID_FORMAT"),
        (CaseRequest(fingerprint="private", urls=("http://10.0.0.1/a.png",)), "UNSAFE_URL"),
        (CaseRequest(fingerprint="callback", upload_ids=(uuid.uuid4(),), callback_url="http://127.0.0.1/hook"), "UNSAFE_URL"),
    ],
)
def test_refused_requests_create_nothing_and_free_their_key(database: None, sent: list, request_: CaseRequest, code: str) -> None:
    principal = _principal()
    with pytest.raises(Refused) as refused:
        _create(principal, request_, key="k3")
    assert refused.value.code == code
    assert _cases(principal.tenant_id) == 0 and not sent
    assert idempotency.begin(principal.tenant_id, "k3", intake.ROUTE) is None  # free to reserve again
