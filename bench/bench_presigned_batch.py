"""Soak: a batch of N images submitted by presigned upload reaches ``completed`` with no image lost.

    .venv/bin/python bench/bench_presigned_batch.py [--images 500] [--workers 2] [--methods metadata,integrity]

Real services of this machine: Postgres (a throwaway database), Redis (a key prefix), moto's
S3 server over HTTP on loopback, a ``uvicorn`` API process, one ``celery worker`` with
``--workers`` pool processes (and its beat), and a webhook receiver on 127.0.0.2 (the
case's ``callback_url``, verified with ``standardwebhooks``). Tiny distinct generated JPEGs
and a restricted method set keep it to a few minutes: it measures the integration path
(slots, presigned POSTs, the server's content checks and copies, the fan-out, the
webhook), not the forensic methods. Figures printed: time per phase, images per minute,
and the checks (every image completed, every SHA-256 equal to what was uploaded, one
signed ``case.completed`` received).
"""

import argparse
import hashlib
import io
import logging
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration_support import HOST, Receiver  # noqa: E402
from tests.platform_support import REDIS_URL, ApiServer, Worker, environment, make_tenant, moto_s3, postgres_database  # noqa: E402


def _images(count: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=96, help="side of the generated JPEGs, pixels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default="metadata,integrity")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log

    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-presigned-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    run = uuid.uuid4().hex[:8]
    receiver = Receiver().start()
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = {
            "DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "FORENSICS_BROKER_KEY_PREFIX": f"forensics-bench-{run}:",
            "STORAGE_URL": f"s3://forensics-bench/{run}", "S3_ENDPOINT_URL": endpoint, "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1", "FORENSICS_S3_CREATE_BUCKET": "true",
            "FORENSICS_HOME": str(home), "FORENSICS_ENVIRONMENT": "test", "FORENSICS_METHODS": args.methods,
            "FORENSICS_WEBHOOK_ALLOWLIST": f"{HOST}/32", "FORENSICS_RATE_LIMIT_PER_MINUTE": "0",
            "FORENSICS_RECONCILE_INTERVAL": "10", "FORENSICS_WEBHOOK_POLL_INTERVAL": "1",
        }
        with environment(env):
            _, key = make_tenant("bench")
            auth = {"Authorization": f"Bearer {key}"}
            api = ApiServer(env, home / "api.log")
            worker = Worker(env, home / "worker.log", "bench", concurrency=args.workers)
            base = api.base
            try:
                receiver.secrets["/done"] = httpx.get(f"{base}/v1/webhooks/callback-secret", headers=auth).json()["secret"]
                images = _images(args.images, args.size)
                print(f"{args.images} JPEGs of {args.size}x{args.size} px, {sum(map(len, images)) / 1e6:.1f} MB; "
                      f"methods {args.methods}; {args.workers} worker processes")

                t0 = time.perf_counter()
                files = [{"filename": f"img{i:04d}.jpg", "size": len(d)} for i, d in enumerate(images)]
                slots = httpx.post(f"{base}/v1/uploads", headers=auth, json={"files": files}, timeout=120).json()["data"]
                t1 = time.perf_counter()

                def upload(item: tuple[dict, bytes]) -> int:
                    slot, data = item
                    with httpx.Client(timeout=30) as client:
                        return client.post(slot["url"], data=slot["fields"], files={"file": (slot["filename"], data)}).status_code

                with ThreadPoolExecutor(16) as pool:
                    codes = list(pool.map(upload, zip(slots, images, strict=True)))
                t2 = time.perf_counter()
                created = httpx.post(f"{base}/v1/cases", headers=auth, timeout=600,
                                     json={"upload_ids": [s["upload_id"] for s in slots], "callback_url": receiver.url("/done")})
                t3 = time.perf_counter()
                assert created.status_code == 202, created.text
                case_url = created.headers["location"]
                while True:
                    case = httpx.get(case_url, headers=auth, timeout=30).json()
                    if case["status"] in ("completed", "failed") or time.perf_counter() - t3 > args.timeout:
                        break
                    time.sleep(1.0)
                t4 = time.perf_counter()
                for _ in range(60):
                    if receiver.at("/done"):
                        break
                    time.sleep(0.5)
                t5 = time.perf_counter()
            finally:
                worker.stop()
                api.stop()
                receiver.stop()
    sent = {hashlib.sha256(d).hexdigest() for d in images}
    got = [i for i in case["images"] if i["status"] == "completed"]
    lost = args.images - len(got)
    print(f"upload slots ({args.images})            {t1 - t0:7.2f} s")
    print(f"presigned POSTs to S3 (16 threads)  {t2 - t1:7.2f} s  ({args.images / (t2 - t1):.0f} files/s; status codes {sorted(set(codes))})")
    print(f"POST /v1/cases from upload ids      {t3 - t2:7.2f} s  (server reads, checks and copies every object)")
    print(f"case created -> {case['status']:<9}           {t4 - t3:7.2f} s  ({len(got) / (t4 - t3) * 60:.0f} images/min)")
    print(f"case.completed webhook received     {t5 - t4:7.2f} s after the poll saw the end "
          f"(deliveries: {len(receiver.at('/done'))}, verified: {all(r.verified for r in receiver.at('/done'))})")
    print(f"total                               {t4 - t0:7.2f} s")
    same = {i["sha256"] for i in got} == sent
    print(f"images completed {len(got)} / {args.images}; lost {lost}; failed {case['progress']['failed']}; "
          f"stored SHA-256 set equal to the uploaded one: {same}")


if __name__ == "__main__":
    main()
