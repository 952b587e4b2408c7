"""Faults as an operator meets them, on the real services: Redis and Postgres cut mid-batch, a pool
process and a whole worker killed mid-method. What a client sees must stay clean (no 500), and
all work must finish soon after the fault, with every finding stored once.

The services are cut through :class:`tests.faultproxy.FaultProxy` (the shared Redis and Postgres
keep running for the other tests); the API is a real uvicorn process and the workers real
Celery processes, all with the default lease and reconciler interval.
"""

import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from service.db import session_scope
from service.models import FINDING_DONE, FindingRow, FindingStatus, Image
from service.queue import QUEUES
from tests.faultproxy import FaultProxy
from tests.platform_support import (
    REDIS_URL,
    ApiServer,
    Worker,
    bearer,
    data_file,
    environment,
    make_tenant,
    moto_s3,
    poll,
    postgres_database,
    service_env,
)

pytestmark = pytest.mark.timeout(600)

#: Cheap methods for the outage batch (the faults are in the plumbing, not in the methods).
QUICK_METHODS = "metadata,integrity,ela,encoder"


@dataclass
class Faulty:
    env: dict[str, str]
    home: Path
    api: ApiServer
    key: str
    postgres: FaultProxy
    redis: FaultProxy

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api.base, headers=bearer(self.key), timeout=30)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    home = tmp_path_factory.mktemp("faults")
    with postgres_database() as db_url, moto_s3() as endpoint:
        postgres, redis = FaultProxy("127.0.0.1", 5432), FaultProxy("127.0.0.1", 6379)
        env = service_env(
            postgres.url_for(db_url), endpoint, home, "faults",
            BROKER_URL=redis.url_for(REDIS_URL), FORENSICS_RECONCILE_INTERVAL="15",
            FORENSICS_RATE_LIMIT_PER_MINUTE="1000000",  # counted in Redis (so it fails open there), never refusing the pollers
        )
        with environment(env):
            api = ApiServer(env, home / "api.log")
            try:
                yield Faulty(env, home, api, make_tenant()[1], postgres, redis)
            finally:
                api.stop()
                postgres.close()
                redis.close()


def _files(names: list[str], folder: str = "comofod_subset") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (Path(n).name, data_file(folder, n).read_bytes(), "image/png")) for n in names]


def _stored_once(case_ids: list[str]) -> None:
    with session_scope() as session:
        rows = session.execute(
            select(FindingRow.image_id, FindingRow.method, func.count())
            .join(Image).where(Image.case_id.in_([uuid.UUID(c) for c in case_ids]))
            .group_by(FindingRow.image_id, FindingRow.method)
        ).all()
    assert rows and all(count == 1 for *_, count in rows)


def test_redis_and_postgres_outages_mid_batch_give_no_500_and_lose_nothing(faulty: Faulty) -> None:
    """60 images in 6 cases, polled throughout; Redis is cut for 10 s while they are submitted,
    then Postgres for 10 s. Rate limiting fails open while Redis is away (polls and uploads go on),
    what needs Postgres answers 503 with Retry-After, and every case completes within 60 s of
    the services' return."""
    folder = data_file("comofod_subset", "tampered").parent
    names = sorted(str(p.relative_to(folder)) for sub in ("tampered", "authentic") for p in (folder / sub).iterdir())[:60]
    assert len(names) == 60
    worker = Worker({**faulty.env, "FORENSICS_METHODS": QUICK_METHODS}, faulty.home / "outage.log", "outage")
    statuses: Counter[int] = Counter()
    unavailable: list[httpx.Response] = []
    case_ids: list[str] = []
    stop = threading.Event()

    def record(response: httpx.Response) -> httpx.Response:
        statuses[response.status_code] += 1
        if response.status_code == 503:
            unavailable.append(response)
        return response

    def poller() -> None:
        with faulty.client() as client:
            while not stop.is_set():
                for case_id in list(case_ids):
                    record(client.get(f"/v1/cases/{case_id}"))
                time.sleep(0.2)

    thread = threading.Thread(target=poller)
    try:
        with faulty.client() as client:
            case_ids.append(record(client.post("/v1/cases", files=_files(names[:10]))).json()["id"])
            thread.start()
            faulty.redis.cut()
            cut = time.monotonic()
            for start in range(10, 40, 10):  # submitted while Redis is away
                response = record(client.post("/v1/cases", files=_files(names[start:start + 10])))
                assert response.status_code == 202, response.text
                case_ids.append(response.json()["id"])
            time.sleep(max(0.0, 10 - (time.monotonic() - cut)))
            faulty.redis.restore()
            faulty.postgres.cut()
            refused = record(client.post("/v1/cases", files=_files(names[40:50])))
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert refused.json()["code"] == "UNAVAILABLE"
            time.sleep(10)
            faulty.postgres.restore()
            back = time.monotonic()
            for start in (40, 50):
                case_ids.append(record(client.post("/v1/cases", files=_files(names[start:start + 10]))).json()["id"])
            for case_id in case_ids:
                left = 60 - (time.monotonic() - back)
                case = poll(lambda: record(client.get(f"/v1/cases/{case_id}")).json(),
                            lambda b: b.get("status") in ("completed", "failed"), max(1.0, left), f"case {case_id} done")
                assert case["status"] == "completed" and case["progress"]["completed"] == 10, case
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        faulty.redis.restore()
        faulty.postgres.restore()
        worker.stop()
    print(f"responses by status during the outages: {dict(statuses)}")
    assert statuses[500] == 0 and statuses[200] > 0 and unavailable
    assert all(r.headers.get("retry-after") and r.json()["code"] == "UNAVAILABLE" for r in unavailable)
    _stored_once(case_ids)


#: Methods that run for a second or more on the test photos, so that a kill seen running one lands while it runs.
SLOW_METHODS = ("copymove", "deep_scan")


def _running_finding(case_id: str) -> tuple[uuid.UUID, str] | None:
    with session_scope() as session:
        row = session.execute(
            select(FindingRow.image_id, FindingRow.method).join(Image)
            .where(Image.case_id == uuid.UUID(case_id), FindingRow.status == FindingStatus.RUNNING,
                   FindingRow.method.in_(SLOW_METHODS)).limit(1)
        ).first()
    return None if row is None else (row[0], row[1])


def _pool_children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _submit_photos(faulty: Faulty) -> str:
    names = sorted(p.name for p in data_file("dresden_natural", "authentic/natural").iterdir())[:2]
    files = [("images", (n, data_file("dresden_natural", f"authentic/natural/{n}").read_bytes(), "image/jpeg")) for n in names]
    with faulty.client() as client:
        response = client.post("/v1/cases", files=files)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _done_within(faulty: Faulty, case_id: str, since: float, seconds: float) -> dict[str, Any]:
    with faulty.client() as client:
        case = poll(lambda: client.get(f"/v1/cases/{case_id}").json(), lambda b: b["status"] in ("completed", "failed"),
                    seconds - (time.monotonic() - since), "case done")
    assert case["status"] == "completed", case
    with session_scope() as session:
        statuses = session.scalars(select(FindingRow.status).join(Image).where(Image.case_id == uuid.UUID(case_id))).all()
    assert set(statuses) <= set(FINDING_DONE) and FindingStatus.ERROR not in statuses
    _stored_once([case_id])
    return case


def _publish_stamps(case_id: str) -> list[Any]:
    with session_scope() as session:
        return list(session.scalars(select(Image.enqueued_at).where(Image.case_id == uuid.UUID(case_id))))


def test_work_queued_when_redis_lost_its_messages_is_sent_again_once_the_worker_reconnects(faulty: Faulty) -> None:
    """Redis loses a case's queued messages while the worker's connection breaks (a Redis restarted
    without its data; a message handed out by ``BRPOP`` whose reply was lost to the cut). The
    rows still say "sent", which alone would look like a long queue for FORENSICS_REQUEUE_AFTER
    (900 s); the worker reports the loss when it is back, and the case completes within 60 s."""
    case_id = _submit_photos(faulty)  # no worker consumes yet: the prepare messages wait in Redis
    poll(lambda: _publish_stamps(case_id), all, 30, "the publishes recorded")
    broker = redis.Redis.from_url(REDIS_URL)  # every queue goes, as in a restart: earlier tests' leftovers too
    queued = [key for name in QUEUES for key in broker.scan_iter(f"{faulty.env['FORENSICS_BROKER_KEY_PREFIX']}{name}*")]
    assert queued and broker.delete(*queued)
    worker = Worker({**faulty.env, "FORENSICS_METHODS": QUICK_METHODS}, faulty.home / "lost.log", "lost")
    try:
        faulty.redis.cut()
        time.sleep(2)
        faulty.redis.restore()
        back = time.monotonic()
        _done_within(faulty, case_id, back, 60)
        print(f"case done {time.monotonic() - back:.1f} s after Redis came back without its messages")
    finally:
        worker.stop()
    assert "re-sending the work queued before" in worker.log.read_text()


def test_a_pool_process_killed_mid_method_gives_its_work_back_at_once(faulty: Faulty) -> None:
    """Every pool process of one worker is SIGKILLed while a method runs (as the kernel's OOM killer
    would). The worker gives the lost claims back as it requeues their messages, so the case
    completes with no reconciler running at all (a claimed finding would otherwise wait for its
    lease, 30 s, and the reconciler's next pass)."""
    worker = Worker(faulty.env, faulty.home / "pool.log", "pool", beat=False)
    try:
        case_id = _submit_photos(faulty)
        running = poll(lambda: _running_finding(case_id), lambda r: r is not None, 120, "a running method")
        for pid in _pool_children(worker.process.pid):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _done_within(faulty, case_id, killed, 30)
        print(f"pool processes killed while {running} ran: case done {time.monotonic() - killed:.1f} s after the kill")
    finally:
        worker.stop()
    assert f"{running[1]} of image {running[0]}: its pool process died: claim given back" in worker.log.read_text()


def test_a_whole_worker_killed_mid_method_is_recovered_within_90_s(faulty: Faulty) -> None:
    worker = Worker(faulty.env, faulty.home / "doomed.log", "doomed", beat=False)
    case_id = _submit_photos(faulty)
    running = poll(lambda: _running_finding(case_id), lambda r: r is not None, 120, "a running method")
    worker.kill()
    killed = time.monotonic()
    successor = Worker(faulty.env, faulty.home / "successor.log", "successor")
    try:
        _done_within(faulty, case_id, killed, 90)
        print(f"worker killed while {running} ran: case done {time.monotonic() - killed:.1f} s after the kill")
    finally:
        successor.stop()


def test_a_postgres_that_never_answers_fails_the_connection_within_its_timeout() -> None:
    """A server that takes the TCP connection but never answers (a hung host, a half-open
    proxy): the engine's connection attempt fails after libpq's ``connect_timeout``, so a
    request waiting for a pooled connection gets an error instead of waiting for ever."""
    from sqlalchemy.exc import OperationalError

    from service.db import POSTGRES_CONNECT_ARGS, make_engine

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
    engine = make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"):
            engine.connect()
    finally:
        engine.dispose()
        silent.close()
    assert time.monotonic() - started < POSTGRES_CONNECT_ARGS["connect_timeout"] + 5
