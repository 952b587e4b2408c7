"""The fan-out's logic, task functions called directly on Postgres (the plumbing is in test_platform.py).

Messages are captured instead of sent, so each test sees exactly what would be enqueued.
"""

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import prometheus_client
import pytest
from sqlalchemy import event, func, select, text, update
from threadpoolctl import threadpool_limits

from forensics import analyze, load_image
from forensics.exif import extract_metadata
from forensics.fusion import Fused, fuse
from forensics.methods import REGISTRY
from forensics.render import to_gray
from service import analysis, cases, dispatch, queue
from service.db import get_autocommit_engine, get_engine, session_scope
from service.heatmaps import load_heatmap
from service.models import FINDING_DONE, Case, FindingRow, FindingStatus, Image, ImageStatus, utcnow
from service.settings import Settings
from service.storage import get_storage
from tests.platform_support import data_file, environment, make_tenant, postgres_database

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("fanout")
    with postgres_database() as url, environment({
        "DATABASE_URL": url,
        "BROKER_URL": "redis://127.0.0.1:6379/14",
        "STORAGE_URL": (home / "storage").as_uri(),
        "FORENSICS_HOME": str(home),
        "FORENSICS_METHODS": "",
        "FORENSICS_METHOD_TIME_LIMIT": "60",
        "FORENSICS_METHOD_SOFT_TIME_LIMIT": "50",
        "FORENSICS_MAX_ATTEMPTS": "2",
        "FORENSICS_REQUEUE_AFTER": "600",
        "FORENSICS_LEASE_SECONDS": "1.5",
    }):
        yield


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    messages: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(queue, "_send", lambda name, args: messages.extend((name, a) for a in args))
    return messages


def _new_case(names: list[str], folder: str = "comofod_subset") -> tuple[uuid.UUID, list[uuid.UUID]]:
    intakes = []
    for name in names:
        path = data_file(folder, name)
        data = path.read_bytes()
        intakes.append(cases.Intake(path.name, path, len(data), hashlib.sha256(data).hexdigest()))
    with session_scope() as session:
        case, queued = cases.create_case(
            session, get_storage(), tenant_id=make_tenant()[0], label=None, callback_url=None, intakes=intakes
        )
        return case.id, queued


def _messages(sent: list[tuple[str, list[str]]], name: str) -> list[list[str]]:
    return [args for n, args in sent if n == name]


def test_fan_out_join_and_case_completion_happen_once(database: None, sent: list[tuple[str, list[str]]]) -> None:
    case_id, (image_id,) = _new_case(["tampered/034_F.png"])
    with threadpool_limits(limits=1, user_api="blas"):  # as in a pool process (see test_the_service_fuses_what_the_engine_fuses)
        analysis.prepare_image(image_id)
        analysis.prepare_image(image_id)  # a redelivered prepare: no second fan-out
        methods = _messages(sent, queue.RUN_METHOD)
        assert sorted(m for _, m in methods) == sorted(REGISTRY)
        for image, method in methods:
            analysis.run_method(uuid.UUID(image), method)
        assert _messages(sent, queue.FUSE_IMAGE) == [[str(image_id)]]
        for image, method in methods:  # redelivered method tasks change nothing and join nothing
            analysis.run_method(uuid.UUID(image), method)
        assert len(_messages(sent, queue.FUSE_IMAGE)) == 1
        analysis.fuse_image(image_id)
        analysis.fuse_image(image_id)
    with session_scope() as session:
        image = session.get_one(Image, image_id)
        assert image.status == ImageStatus.COMPLETED and image.tamper_score is not None
        # the distributed fan-out reaches the engine's own result for the same bytes
        engine = analyze(data_file("comofod_subset", "tampered/034_F.png").read_bytes())
        assert engine.fused.score is not None
        assert image.tamper_score == pytest.approx(engine.fused.score, abs=1e-6)
        assert image.verdict == engine.fused.verdict
        assert session.get_one(Case, case_id).status == "completed"
        assert session.scalar(select(func.count()).select_from(FindingRow).where(FindingRow.image_id == image_id)) == len(REGISTRY)
        assert not analysis.complete_case_if_done(session, case_id)
    storage = get_storage()
    if image.heatmap_key:
        assert storage.get_bytes(image.heatmap_key).startswith(b"\x89PNG")


#: Forgeries whose maps the fused map combines: copy-move (PNG), spliced JPEGs (jpeg, ela, resave maps).
_SAME_AS_ENGINE = [
    ("comofod_subset", "tampered/034_F.png"),
    ("comofod_subset", "tampered/005_F.png"),
    ("casia2_samples", "tampered/Tp_S_NNN_S_O_pla00077_pla00077_11212.jpg"),
    ("casia2_samples", "tampered/Tp_D_CRN_S_N_nat00033_cha00086_11502.jpg"),
]


@pytest.mark.parametrize(("folder", "name"), _SAME_AS_ENGINE)
def test_the_service_fuses_what_the_engine_fuses(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch, folder: str, name: str
) -> None:
    """Prepare, one task per method and the join, on Postgres, give the score and map of
    ``forensics.analyze`` for the same bytes: each method's stored float map is the engine's
    rounded to float16, so the fused map is within float16 rounding (2^-12 on [0, 1]) of the
    engine's, and the score, which fusion takes from the methods' scores, is the engine's."""
    fused_by_service: list[Fused] = []
    monkeypatch.setattr(analysis, "fuse", lambda *args: fused_by_service.append(fuse(*args)) or fused_by_service[-1])
    _, (image_id,) = _new_case([name], folder)
    # One BLAS thread, as in a pool process (worker/celery_app.py) and in the engine's parallel
    # pipeline: with two, a matrix product sums in another order and a few float16 roundings differ.
    with threadpool_limits(limits=1, user_api="blas"):
        analysis.prepare_image(image_id)
        for image, method in _messages(sent, queue.RUN_METHOD):
            analysis.run_method(uuid.UUID(image), method)
        analysis.fuse_image(image_id)
    engine = analyze(data_file(folder, name).read_bytes())
    (service,) = fused_by_service
    assert engine.fused.score is not None and engine.fused.heatmap is not None and service.heatmap is not None
    assert service.score == pytest.approx(engine.fused.score, abs=1e-6)
    assert service.heatmap.shape == engine.fused.heatmap.shape
    np.testing.assert_allclose(service.heatmap, engine.fused.heatmap, rtol=0, atol=2**-12 + 1e-6)
    storage = get_storage()
    by_method = {f.method: f for f in engine.findings}
    with session_scope() as session:
        image = session.get_one(Image, image_id)
        assert image.tamper_score == pytest.approx(engine.fused.score, abs=1e-6)
        assert image.fused == json.loads(json.dumps(engine.fused.to_dict()))  # verdict, summary, contributions
        maps = 0
        for row in image.findings:
            expected = by_method[row.method].heatmap
            assert (row.heatmap_key is None) == (expected is None), row.method
            if expected is not None:
                assert row.heatmap_key is not None and row.heatmap_key.endswith(".png")
                assert storage.get_bytes(row.heatmap_key).startswith(b"\x89PNG")  # for clients, as before
                np.testing.assert_array_equal(load_heatmap(storage, row.heatmap_key), expected.astype(np.float16).astype(np.float32), err_msg=row.method)
                maps += 1
        assert maps >= 2, "the fused map should combine more than one method's map"
        assert image.heatmap_key is not None
        stored = cv2.imdecode(np.frombuffer(storage.get_bytes(image.heatmap_key), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert np.abs(stored.astype(int) - to_gray(engine.fused.heatmap).astype(int)).max() <= 1


def test_a_method_task_checks_out_one_autocommit_connection_for_its_three_commits(
    database: None, sent: list[tuple[str, list[str]]]
) -> None:
    """Claim, record, join: three one-statement transactions on one connection, each committed by
    the database as it ends (no BEGIN and COMMIT round trips), and the pool never resets it."""
    _, (image_id,) = _new_case(["tampered/034_F.png"])
    analysis.prepare_image(image_id)
    checkouts: list[object] = []
    autocommit: list[bool] = []
    on_checkout = lambda dbapi_connection, *_: checkouts.append(dbapi_connection)  # noqa: E731
    on_execute = lambda connection, *_: autocommit.append(connection.connection.dbapi_connection.autocommit)  # noqa: E731
    engines = (get_engine(), get_autocommit_engine())
    for engine in engines:
        event.listen(engine, "checkout", on_checkout)
        event.listen(engine, "before_cursor_execute", on_execute)
    try:
        analysis.run_method(image_id, "noise")
    finally:
        for engine in engines:
            event.remove(engine, "checkout", on_checkout)
            event.remove(engine, "before_cursor_execute", on_execute)
    assert len(checkouts) == 1
    assert len(autocommit) == 4 and all(autocommit), autocommit  # the select, the claim, the finding, the join
    with get_autocommit_engine().connect() as connection:  # back in its pool, still autocommit
        assert connection.connection.dbapi_connection.autocommit
    with session_scope() as session:
        row = session.scalars(select(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == "noise")).one()
        assert row.status == FindingStatus.OK and row.score is not None and row.attempts == 1


def test_report_metadata_comes_from_the_metadata_method_or_a_fresh_read(database: None, sent: list[tuple[str, list[str]]]) -> None:
    name = "tampered/005_F.png"  # XMP naming Photoshop CS5 and a PNG Software chunk naming ImageReady
    expected = json.loads(json.dumps(analysis._jsonable(extract_metadata(load_image(data_file("comofod_subset", name).read_bytes())))))
    assert expected["software"][0]["value"] == "Adobe Photoshop CS5 Windows"
    for metadata_failed in (False, True):
        _, (image_id,) = _new_case([name])
        analysis.prepare_image(image_id)
        with session_scope() as session:
            assert session.get_one(Image, image_id).image_metadata is None  # read once, by the metadata method
        for image, method in _messages(sent, queue.RUN_METHOD)[-len(REGISTRY) :]:
            analysis.run_method(uuid.UUID(image), method)
        if metadata_failed:
            with session_scope() as session:
                session.execute(
                    update(FindingRow)
                    .where(FindingRow.image_id == image_id, FindingRow.method == "metadata")
                    .values(status=FindingStatus.ERROR, details={})
                )
                session.commit()
        analysis.fuse_image(image_id)
        with session_scope() as session:
            assert session.get_one(Image, image_id).image_metadata == expected


def test_concurrent_finishers_elect_exactly_one_join(database: None, sent: list[tuple[str, list[str]]]) -> None:
    _, (image_id,) = _new_case(["tampered/037_F.png"])
    analysis.prepare_image(image_id)
    for image, method in _messages(sent, queue.RUN_METHOD):
        analysis.run_method(uuid.UUID(image), method)
    for _ in range(5):
        with session_scope() as session:
            session.execute(update(Image).where(Image.id == image_id).values(status=ImageStatus.RUNNING))
            session.commit()
        barrier = threading.Barrier(8)
        wins: list[bool] = []

        def finisher() -> None:
            with session_scope() as session:
                barrier.wait()
                wins.append(analysis.try_join(session, image_id))

        threads = [threading.Thread(target=finisher) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 7 + [True]


def test_reconciler_retries_stuck_methods_then_records_an_error(database: None, sent: list[tuple[str, list[str]]]) -> None:
    _, (image_id,) = _new_case(["tampered/039_F.png"])
    analysis.prepare_image(image_id)
    method = next(iter(REGISTRY))
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope() as session:  # a worker died while running the method (first attempt)
        session.execute(
            update(FindingRow)
            .where(FindingRow.image_id == image_id, FindingRow.method == method)
            .values(status=FindingStatus.RUNNING, started_at=long_ago, alive_at=long_ago, attempts=1)
        )
        session.commit()
    sent.clear()
    repairs = analysis.reconcile()
    assert repairs.requeued_methods == [(image_id, method)]
    assert _messages(sent, queue.RUN_METHOD) == [[str(image_id), method]]
    with session_scope() as session:  # and died again: max_attempts (2) reached
        session.execute(
            update(FindingRow)
            .where(FindingRow.image_id == image_id, FindingRow.method == method)
            .values(status=FindingStatus.RUNNING, started_at=long_ago, alive_at=long_ago, attempts=2)
        )
        session.commit()
    sent.clear()
    repairs = analysis.reconcile()
    assert repairs.timed_out_methods == [(image_id, method)]
    with session_scope() as session:
        row = session.scalar(select(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == method))
        assert row is not None and row.status == FindingStatus.ERROR and "process stopped" in (row.summary or "")
    assert _messages(sent, queue.RUN_METHOD) == []


def test_a_running_method_beats_and_is_neither_reclaimed_nor_requeued(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is 1.5 s here; a method that runs 4 s keeps its claim by its heartbeat, so neither a
    redelivered message nor the reconciler starts it a second time meanwhile."""
    _, (image_id,) = _new_case(["authentic/037_O.png"])
    analysis.prepare_image(image_id)
    examine = analysis._examine
    runs: list[str] = []
    during: list[object] = []

    def slow(image: Image, method: str):  # type: ignore[no-untyped-def]
        runs.append(method)
        if method == "integrity":
            time.sleep(4)
        return examine(image, method)

    monkeypatch.setattr(analysis, "_examine", slow)
    worker = threading.Thread(target=analysis.run_method, args=(image_id, "integrity"))
    worker.start()
    time.sleep(3)  # two leases after the claim
    analysis.run_method(image_id, "integrity")  # a duplicate delivery meanwhile
    during.append(analysis.reconcile())
    worker.join()
    assert runs == ["integrity"]
    assert (image_id, "integrity") not in during[0].requeued_methods  # type: ignore[attr-defined]
    with session_scope() as session:
        row = session.scalar(select(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == "integrity"))
        assert row is not None and row.status in FINDING_DONE and row.attempts == 1


def test_a_prepare_delivered_again_sends_the_methods_its_dead_process_left_unsent(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that prepared an image dies between its commit and its publish: the message it
    held comes back, and that delivery sends the methods at once; a further delivery sends none."""
    _, (image_id,) = _new_case(["tampered/034_F.png"])
    with monkeypatch.context() as dying:
        dying.setattr(analysis, "send_methods", lambda jobs: None)
        analysis.prepare_image(image_id)
    assert not _messages(sent, queue.RUN_METHOD)
    analysis.prepare_image(image_id)
    assert sorted(m for _, m in _messages(sent, queue.RUN_METHOD)) == sorted(REGISTRY)
    analysis.prepare_image(image_id)
    assert len(_messages(sent, queue.RUN_METHOD)) == len(REGISTRY)


def test_a_lost_claim_is_given_back_only_by_its_delivery_and_within_its_attempts(
    database: None, sent: list[tuple[str, list[str]]]
) -> None:
    """When a pool process dies mid-method, the worker gives back the claim its delivery took, so
    the requeued message runs at once; a claim another delivery holds is never touched, and one at
    its last attempt (FORENSICS_MAX_ATTEMPTS is 2 here) stays for the reconciler to end."""
    _, (image_id,) = _new_case(["tampered/034_F.png"])
    analysis.prepare_image(image_id)

    def held_by(method: str, claimant: str, attempts: int) -> None:  # as a claim leaves it, its process then killed
        with session_scope() as session:
            session.execute(
                update(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == method)
                .values(status=FindingStatus.RUNNING, claimed_by=claimant, attempts=attempts, alive_at=utcnow())
            )
            session.commit()

    def row(method: str) -> FindingRow:
        with session_scope() as session:
            return session.scalars(select(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == method)).one()

    given_back = lambda: prometheus_client.REGISTRY.get_sample_value("forensics_lost_claims_given_back_total", {"method": "noise"}) or 0.0  # noqa: E731
    before = given_back()
    held_by("noise", "delivery-a", 1)
    assert not analysis.give_back_lost_claim(image_id, "noise", "delivery-b")
    analysis.run_method(image_id, "noise", claimant="delivery-b")  # the lease still holds: refused
    assert row("noise").status == FindingStatus.RUNNING and row("noise").attempts == 1
    assert analysis.give_back_lost_claim(image_id, "noise", "delivery-a")
    assert given_back() == before + 1, "counted for the operator (forensics_lost_claims_given_back_total)"
    analysis.run_method(image_id, "noise", claimant="delivery-a")  # the requeued message
    done = row("noise")
    assert done.status == FindingStatus.OK and done.attempts == 2 and done.claimed_by == "delivery-a"
    assert not analysis.give_back_lost_claim(image_id, "noise", "delivery-a"), "a finished finding stays finished"

    held_by("ela", "delivery-c", 2)
    assert not analysis.give_back_lost_claim(image_id, "ela", "delivery-c")
    assert row("ela").status == FindingStatus.RUNNING


def test_work_whose_process_died_is_found_after_the_lease(database: None, sent: list[tuple[str, list[str]]]) -> None:
    """A prepare or a fuse whose process died stops beating: one lease later it is sent again."""
    _, (preparing, fusing) = _new_case(["tampered/041_F.png", "authentic/041_O.png"])
    just_now = utcnow()
    with session_scope() as session:
        session.execute(update(Image).where(Image.id == preparing).values(attempts=1, updated_at=just_now))
        session.execute(update(Image).where(Image.id == fusing).values(status=ImageStatus.FUSING, updated_at=just_now))
        session.commit()
    within = analysis.reconcile(just_now + timedelta(seconds=1))
    assert preparing not in within.requeued_prepares and fusing not in within.requeued_fuses
    repairs = analysis.reconcile(just_now + timedelta(seconds=2))
    assert preparing in repairs.requeued_prepares and fusing in repairs.requeued_fuses
    assert [str(preparing)] in _messages(sent, queue.PREPARE_IMAGE) and [str(fusing)] in _messages(sent, queue.FUSE_IMAGE)


def test_a_join_that_fails_every_time_fails_its_image_and_closes_the_case(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join that raises is sent again a lease later, up to max_attempts (2 here); then the image
    fails with a reason and its case closes, instead of staying in ``fusing`` for good."""
    case_id, (image_id,) = _new_case(["tampered/039_F.png"])
    analysis.prepare_image(image_id)
    for image, method in _messages(sent, queue.RUN_METHOD):
        analysis.run_method(uuid.UUID(image), method)

    def broken(*_args: object) -> Fused:
        raise RuntimeError("a fusion bug")

    monkeypatch.setattr(analysis, "fuse", broken)
    for attempt in (1, 2):
        with pytest.raises(RuntimeError):
            analysis.fuse_image(image_id)
        repairs = analysis.reconcile(utcnow() + timedelta(seconds=2))
        if attempt == 1:  # (other tests' images share this database)
            assert image_id in repairs.requeued_fuses and image_id not in repairs.failed_fuses
    assert image_id in repairs.failed_fuses and case_id in repairs.closed_cases
    with session_scope() as session:
        image = session.get_one(Image, image_id)
        assert (image.status, image.error_code, image.fuse_attempts) == (ImageStatus.FAILED, "ANALYSIS_ERROR", 2)
        assert "could not be fused" in (image.error_detail or "")
        assert session.get_one(Case, case_id).status == "failed"


def test_work_that_could_not_be_published_is_sent_a_lease_later(
    database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the broker down the publish fails; the rows are the outbox, so the reconciler sends them
    once a lease (1.5 s here) has passed, not FORENSICS_REQUEUE_AFTER (600 s here) later."""
    from kombu.exceptions import OperationalError

    def down(name: str, args: object) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(queue, "_send", down)
    _, queued = _new_case(["tampered/047_F.png"])
    dispatch.send_prepares(queued)
    with session_scope() as session:
        assert session.get_one(Image, queued[0]).enqueued_at is None
    messages: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(queue, "_send", lambda name, args: messages.extend((name, a) for a in args))
    assert queued[0] not in analysis.reconcile().requeued_prepares  # its publish may still be under way
    assert queued[0] in analysis.reconcile(utcnow() + timedelta(seconds=2)).requeued_prepares
    analysis.prepare_image(queued[0])
    methods = [m for n, m in messages if n == queue.RUN_METHOD]
    assert len(methods) == len(REGISTRY)
    monkeypatch.setattr(queue, "_send", down)
    dispatch.send_methods([(queued[0], name) for _, name in methods])
    messages.clear()
    monkeypatch.setattr(queue, "_send", lambda name, args: messages.extend((name, a) for a in args))
    later = utcnow() + timedelta(seconds=2)
    assert {(queued[0], name) for _, name in methods} <= set(analysis.reconcile(later).requeued_methods)
    assert all(image != queued[0] for image, _ in analysis.reconcile(later).requeued_methods)  # sent once


def test_a_prepare_that_died_between_its_commit_and_its_publish_loses_nothing(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The findings are written unsent; only a publish that succeeded marks them. A process killed
    right after the commit leaves them unsent, and a lease later the reconciler sends them."""
    _, (image_id,) = _new_case(["tampered/048_F.png"])
    with monkeypatch.context() as dying:
        dying.setattr(analysis, "send_methods", lambda jobs: None)  # the process dies here
        analysis.prepare_image(image_id)
    assert _messages(sent, queue.RUN_METHOD) == []
    repairs = analysis.reconcile(utcnow() + timedelta(seconds=2))
    assert sorted(m for i, m in repairs.requeued_methods if i == image_id) == sorted(REGISTRY)
    assert sorted(m for i, m in _messages(sent, queue.RUN_METHOD) if i == str(image_id)) == sorted(REGISTRY)


def test_reconciler_resends_lost_messages(database: None, sent: list[tuple[str, list[str]]]) -> None:
    """A message that was published and then vanished (with the broker's data) is sent again after
    FORENSICS_REQUEUE_AFTER (600 s here): the row cannot tell it from one waiting in a long queue."""
    _, (image_id,) = _new_case(["tampered/040_F.png"])
    dispatch.send_prepares([image_id])
    sent.clear()
    assert image_id not in analysis.reconcile(utcnow() + timedelta(seconds=2)).requeued_prepares  # sent, waiting
    later = utcnow() + timedelta(seconds=601)
    assert image_id in analysis.reconcile(later).requeued_prepares
    assert _messages(sent, queue.PREPARE_IMAGE).count([str(image_id)]) == 1
    assert image_id not in analysis.reconcile(later).requeued_prepares  # re-sent once per requeue period


def test_case_of_only_refused_files_is_failed_at_once(database: None) -> None:
    refused = cases.Intake("notes.txt", None, 12, None, error_code="INVALID_FORMAT", error_detail="not an image")
    with session_scope() as session:
        case, queued = cases.create_case(
            session, get_storage(), tenant_id=make_tenant()[0], label="x", callback_url=None, intakes=[refused]
        )
        assert queued == [] and case.status == "failed" and case.images[0].error_code == "INVALID_FORMAT"


def test_storage_keys_are_relative_and_confined(tmp_path: Path) -> None:
    from service.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    storage.put_bytes("cases/a/b.png", b"x", "image/png")
    assert storage.get_bytes("cases/a/b.png") == b"x" and storage.exists("cases/a/b.png")
    for bad in ("../escape", "/etc/passwd", "cases/../../x"):
        with pytest.raises(ValueError):
            storage.get_bytes(bad)


def test_local_storage_links_a_finished_file_and_copies_across_file_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from service.storage import LocalStorage

    storage = LocalStorage(tmp_path / "storage")
    upload = tmp_path / "upload"
    upload.write_bytes(b"original bytes")
    storage.put_file("cases/a/original", upload, "image/jpeg")
    stored = tmp_path / "storage" / "cases" / "a" / "original"
    assert stored.read_bytes() == b"original bytes" and stored.stat().st_ino == upload.stat().st_ino  # no copy
    assert stored.stat().st_mode & 0o777 == 0o600
    upload.unlink()  # the request's temporary folder goes; the object stays
    assert storage.get_bytes("cases/a/original") == b"original bytes"

    def other_device(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", other_device)
    storage.copy("cases/a/original", "cases/b/original")
    copied = tmp_path / "storage" / "cases" / "b" / "original"
    assert copied.read_bytes() == b"original bytes" and copied.stat().st_ino != stored.stat().st_ino
    assert not [p for p in copied.parent.iterdir() if p.name.startswith(".part-")]


def test_the_status_fingerprint_moves_at_every_visible_change_and_only_then(
    database: None, sent: list[tuple[str, list[str]]]
) -> None:
    """The status poll reuses a rendered body while this fingerprint holds: it must move whenever
    the summary changes (image statuses, scores, the case's status) and stay put otherwise."""
    case_id, (first, second) = _new_case(["tampered/034_F.png", "authentic/034_O.png"])
    with session_scope() as session:
        tenant_id = session.get_one(Case, case_id).tenant_id

    def fingerprint() -> tuple:
        with session_scope() as session:
            return cases.status_fingerprint(session, tenant_id, case_id)

    seen = [fingerprint()]
    assert fingerprint() == seen[-1], "nothing changed, nothing moves"
    for image_id in (first, second):
        analysis.prepare_image(image_id)
        seen.append(fingerprint())
        analysis.prepare_image(image_id)  # a redelivery changes nothing visible
        assert fingerprint() == seen[-1]
    for image_id, method in _messages(sent, queue.RUN_METHOD):
        analysis.run_method(uuid.UUID(image_id), method)
    seen.append(fingerprint())  # both images fusing
    analysis.fuse_image(first)
    seen.append(fingerprint())
    analysis.fuse_image(second)  # the last image completes, and with it the case
    seen.append(fingerprint())
    assert len(set(seen)) == len(seen), seen
    with session_scope() as session:
        assert session.get_one(Case, case_id).status == "completed"
        with pytest.raises(cases.NotFound):
            cases.status_fingerprint(session, uuid.uuid4(), case_id)  # another tenant's case does not exist


def test_no_transaction_stays_open_while_a_method_runs(
    database: None, sent: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method may run for minutes: the task's session must not sit "idle in transaction" meanwhile
    (it would hold a snapshot and a connection's locks for that long)."""
    _, (image_id,) = _new_case(["authentic/034_O.png"])
    analysis.prepare_image(image_id)
    states: list[list[str]] = []
    examine = analysis._examine

    def watched(image: Image, method: str):  # type: ignore[no-untyped-def]
        from service.db import get_engine

        with get_engine().connect() as probe:  # another connection looks at every session of the database
            states.append(list(probe.scalars(text(
                "SELECT coalesce(state, '') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ))))
        return examine(image, method)

    monkeypatch.setattr(analysis, "_examine", watched)
    analysis.run_method(image_id, "integrity")
    assert states and all("idle in transaction" not in s for s in states), states


def test_pool_processes_are_recycled_rarely_by_count_and_early_by_memory() -> None:
    """Recycling can idle a slot for 5 s (celery/celery#9588), so the count is high; the memory
    bound (in MB here, KiB for Celery) is what limits a heap kept after a very large image."""
    conf = queue.make_celery(Settings()).conf
    assert conf.worker_max_tasks_per_child == 10000 and conf.worker_max_memory_per_child == 3072 * 1024
    assert queue.make_celery(Settings(worker_max_memory_mb=0)).conf.worker_max_memory_per_child is None


def test_publishing_threads_share_one_result_backend() -> None:
    """Celery builds a thread's result backend on its first publish (about 15 ms of entry-point scanning);
    there is no result backend here, so every thread of the API's pool uses the one built at start-up."""
    import threading

    app = queue.make_celery(Settings())
    backends = [app.backend]
    thread = threading.Thread(target=lambda: backends.append(app.backend))
    thread.start()
    thread.join()
    assert backends[0] is backends[1]


def test_work_in_flight_when_the_workers_were_killed_is_sent_again_at_once(database: None, sent: list[tuple[str, list[str]]]) -> None:
    """``forensics serve`` starting after its worker was killed (``workers_gone``): messages the worker
    had taken died with it, so everything in flight is sent again now, not a lease or
    FORENSICS_REQUEUE_AFTER later; what is done is left alone."""
    _, (queued_id, prepared_id) = _new_case(["tampered/053_F.png", "tampered/054_F.png"])
    dispatch.send_prepares([queued_id, prepared_id])
    analysis.prepare_image(prepared_id)
    (first, *_rest) = [m for i, m in _messages(sent, queue.RUN_METHOD) if i == str(prepared_id)]
    analysis.run_method(prepared_id, first)
    with session_scope() as session:  # a second method was running when the worker was killed
        running = session.scalars(
            select(FindingRow.method).where(FindingRow.image_id == prepared_id, FindingRow.status == FindingStatus.PENDING)
        ).first()
        session.execute(
            update(FindingRow)
            .where(FindingRow.image_id == prepared_id, FindingRow.method == running)
            .values(status=FindingStatus.RUNNING, attempts=1, alive_at=utcnow())
        )
        session.commit()
    sent.clear()
    repairs = analysis.reconcile()
    assert queued_id not in repairs.requeued_prepares and all(i != prepared_id for i, _ in repairs.requeued_methods)
    repairs = analysis.reconcile(workers_gone=True)
    assert queued_id in repairs.requeued_prepares
    assert sorted(m for i, m in repairs.requeued_methods if i == prepared_id) == sorted(set(REGISTRY) - {first})
    assert sorted(m for i, m in _messages(sent, queue.RUN_METHOD) if i == str(prepared_id)) == sorted(set(REGISTRY) - {first})
    assert [str(queued_id)] in _messages(sent, queue.PREPARE_IMAGE)


def test_work_queued_before_a_broker_loss_is_sent_again_once(database: None, sent: list[tuple[str, list[str]]]) -> None:
    """A worker whose broker connection failed reports when (``broker_lost_at``): what was queued
    before then may be gone with the broker and is sent again at once, not FORENSICS_REQUEUE_AFTER
    later; what was queued after it, or already sent again for the same outage by another
    worker's report, is left alone."""
    _, (before, after) = _new_case(["tampered/053_F.png", "tampered/054_F.png"])
    dispatch.send_prepares([before])
    lost_at = utcnow()
    with session_scope() as session:  # stamped after the loss and its margin: a publish the broker took afterwards
        session.execute(update(Image).where(Image.id == after).values(enqueued_at=lost_at + 2 * analysis.BROKER_LOSS_MARGIN))
        session.commit()
    sent.clear()
    assert {before, after}.isdisjoint(analysis.reconcile().requeued_prepares)
    now = lost_at + 3 * analysis.BROKER_LOSS_MARGIN
    repairs = analysis.reconcile(now, broker_lost_at=lost_at)
    assert before in repairs.requeued_prepares and after not in repairs.requeued_prepares
    assert [str(before)] in _messages(sent, queue.PREPARE_IMAGE) and [str(after)] not in _messages(sent, queue.PREPARE_IMAGE)
    assert {before, after}.isdisjoint(analysis.reconcile(now + timedelta(seconds=1), broker_lost_at=lost_at).requeued_prepares)
