"""Platform benchmark: end-to-end throughput, API latency, and API memory during a large upload.

    .venv/bin/python bench/bench_platform.py [--images 32] [--rounds 3] [--megapixels 12] [--workers 2]
        [--clients 50] [--polls 2000] [--creates 200] [--upload-gb 1.0] [--skip throughput,latency,memory]

Runs against the real services of this machine: Postgres (a throwaway database), Redis (a
key prefix), a local storage folder, a ``uvicorn`` API process and ``celery worker``
processes, the way the distributed setup runs them (same code, settings from the
environment). Figures printed:

- throughput: a batch of ``--images`` distinct 12 MP JPEGs (a real camera photo from
  ../shared/data resized and slightly varied, quality 92) through ``--workers`` worker
  processes, from the POST to the case's completion, in images per minute; next to the
  engine's own single-process throughput on the same files (``forensics.analyze`` in one
  process, methods in threads, and with one thread) and as many pinned engine processes as
  workers, bare (methods and fusion) and writing the evidence files a worker stores (float
  and gray heatmaps, JPEG views, fused map, overlay, report JSON; what the platform adds is then
  queue, database, storage calls and the fan-out). The service and the engine writing the
  files alternate, ``--rounds`` times, each service batch between two engine runs (engine,
  service, engine, service, ..., engine), and each round's ratio is taken against the mean of
  the engine runs on either side: this machine's speed drifts by a factor of two within
  minutes, so figures measured one after the other, minutes apart, compare the machine with
  itself rather than the service with the engine. Also printed: where the worker's time goes,
  per task and per method next to the same method's time in the bare engine processes, and
  the CPU seconds per image during the service batches (pool processes' user and system
  time, the rest of the machine, idle);
- latency: p50/p99 of ``GET /v1/cases/{id}`` at ``--clients`` concurrent clients each
  polling every 0.5 s (what clients honouring ``Retry-After`` do, 4x faster) and back to
  back (saturation), and of ``POST /v1/cases`` with one 5 MB JPEG at ``--clients`` clients
  each creating a case every 5 s (10 cases and 50 MB a second) and back to back (saturation:
  50 clients waiting on each other, so latency there is 50 / capacity); the load generator
  shares the machine's cores with the API;
- opening burst: p50/p99 of ``--clients`` simultaneous ``POST /v1/cases`` (one JPEG of
  ``--burst-mb`` MB each, 5 by default) sent as the very first requests of a freshly started
  API, then the same burst again;
- memory: the API process's resident memory (VmRSS) before, at peak and after a single
  multipart request of ``--upload-gb`` GB (copies of the 12 MP test JPEG) streamed from a
  generator, and the time until its 202.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_engine import test_jpeg  # noqa: E402

from forensics.finding import Finding  # noqa: E402
from forensics.fusion import Fused  # noqa: E402
from forensics.image import DecodedImage  # noqa: E402
from tests.integration_support import HOST, Receiver  # noqa: E402
from tests.platform_support import ApiServer, Worker, bearer, environment, make_tenant, postgres_database  # noqa: E402

#: The bench tenant's Authorization header (set in main, once the database exists).
AUTH: dict[str, str] = {}


def _variants(base: bytes, count: int) -> list[bytes]:
    """``count`` distinct JPEGs of the same scene (each a slightly shifted crop, re-encoded at q92)."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(base)).convert("RGB"))
    out = []
    for i in range(count):
        shifted = np.roll(rgb, shift=(i * 7, i * 11), axis=(0, 1))
        buf = io.BytesIO()
        Image.fromarray(shifted).save(buf, format="JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def _jpeg_of_size(base: bytes, megabytes: float) -> bytes:
    """The scene re-encoded at q95 with added sensor-like noise until the file has about ``megabytes`` MB."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(base)).convert("RGB")).astype(np.int16)
    rng = np.random.default_rng(0)
    for sigma in (2, 4, 6, 8, 12, 16, 24):
        noisy = np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=95)
        if buf.tell() >= megabytes * 1e6:
            break
    return buf.getvalue()


def _task_seconds(log: Path) -> dict[str, float]:
    """Total run time per task name, from the worker's "Task ... succeeded in Xs" log lines."""
    totals: dict[str, float] = {}
    for match in re.finditer(r"Task forensics\.(\w+)\[[^\]]+\] succeeded in ([0-9.]+)s", log.read_text(errors="replace")):
        totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def _method_split(log: Path) -> tuple[float, float, float, dict[str, float]]:
    """Seconds in the methods, in decoding and task overhead, and in storing findings, summed over the
    worker's "<method> of image ...: method ... s, decode and overhead ... s, storing ... s" log
    lines; and the methods' seconds by method."""
    pattern = r"(\w+) of image \S+: method ([0-9.]+) s, decode and overhead ([0-9.]+) s, storing ([0-9.]+) s"
    found = [(m[1], float(m[2]), float(m[3]), float(m[4])) for m in re.finditer(pattern, log.read_text(errors="replace"))]
    by_method: dict[str, float] = {}
    for name, seconds, _, _ in found:
        by_method[name] = by_method.get(name, 0.0) + seconds
    return sum(f[1] for f in found), sum(f[2] for f in found), sum(f[3] for f in found), by_method


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _pool_cpu_seconds(worker: Worker) -> tuple[float, float]:
    """User and system CPU seconds so far of the worker's pool processes, those recycled
    (reaped: counted in the main process's children times) and those alive (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = worker.process.pid
    fields = _stat_fields(main)
    user, system = int(fields[13]) / tick, int(fields[14]) / tick
    for pid in Path(f"/proc/{main}/task/{main}/children").read_text().split():
        try:
            fields = _stat_fields(pid)
        except FileNotFoundError:  # recycled since the list was read: its last moments go uncounted
            continue
        user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
    return user, system


def _machine_seconds() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine so far (from /proc/stat)."""
    ticks = [int(x) / os.sysconf("SC_CLK_TCK") for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], ticks[3] + ticks[4]


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return f"p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   (n={len(ordered)})"


def bench_engine(images: list[bytes]) -> tuple[float, float]:
    """Images per minute of the engine in one process: methods in threads, and with a single thread."""
    from forensics import analyze, load_image
    from forensics.fusion import fuse
    from forensics.pipeline import run_methods

    analyze(images[0])  # warm-up (imports, calibration)
    start = time.perf_counter()
    for data in images:
        analyze(data)
    threaded = len(images) / (time.perf_counter() - start) * 60
    start = time.perf_counter()
    for data in images:
        image = load_image(data)
        fuse(run_methods(image, workers=1), (image.height, image.width))
    single = len(images) / (time.perf_counter() - start) * 60
    return threaded, single


def bench_engine_processes(processes: int, count: int, megapixels: float, outputs: bool) -> tuple[float, dict[str, float]]:
    """Images per minute of ``processes`` engine processes running at once, each pinned to its own
    core with one OpenCV and one BLAS thread, methods in one thread, and freed memory kept as a
    worker's pool process keeps it (``forensics.allocator``): the ideal the service's worker
    processes are measured against (same cores, same contention, no platform); and each
    method's mean seconds per image in them. With ``outputs`` each process also writes the
    evidence files a worker stores (``_write_evidence``), so that the comparison isolates what
    the platform adds: queue, database, storage calls and the fan-out."""
    cores = sorted(os.sched_getaffinity(0))
    children = []
    for i in range(processes):
        code = (
            f"import os, sys, cv2; os.sched_setaffinity(0, {{{cores[i % len(cores)]}}}); cv2.setNumThreads(1); "
            "from threadpoolctl import threadpool_limits; threadpool_limits(limits=1); "
            "from forensics.allocator import retain_freed_memory; retain_freed_memory(); "
            f"sys.path.insert(0, {str(REPO / 'bench')!r}); import bench_platform as b; "
            f"import json; print(json.dumps(b._engine_single({count}, {megapixels}, {i}, {outputs})))"
        )
        children.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True))
    results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    methods = {name: statistics.mean(r[1][name] for r in results) for name in results[0][1]}
    return sum(r[0] for r in results), methods


def _engine_single(count: int, megapixels: float, seed: int, outputs: bool) -> tuple[float, dict[str, float]]:
    from forensics import load_image
    from forensics.fusion import fuse
    from forensics.pipeline import run_methods

    images = _variants(test_jpeg(megapixels), count + seed)[seed:]
    image = load_image(images[0])
    run_methods(image, workers=1)  # warm-up
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="forensics-bench-engine-") as out:
        start = time.perf_counter()
        for n, data in enumerate(images):
            image = load_image(data)
            findings = run_methods(image, workers=1)
            fused = fuse(findings, (image.height, image.width))
            if outputs:
                _write_evidence(Path(out) / f"photo_{n:03d}", image, findings, fused)
            for finding in findings:
                seconds[finding.method] = seconds.get(finding.method, 0.0) + finding.seconds / len(images)
        elapsed = time.perf_counter() - start
    return len(images) / elapsed * 60, seconds


def _write_evidence(folder: Path, image: DecodedImage, findings: Sequence[Finding], fused: Fused) -> None:
    """The files a worker stores per image besides its rows, made by the same encoders as in
    ``service/analysis.py`` (float and gray heatmaps, JPEG views, the fused map and the overlay),
    and the report's JSON, written to a local folder as the benchmark's storage is."""
    from forensics.methods.metadata import extraction
    from forensics.pipeline import file_info
    from forensics.render import encode_jpeg, gray_png, overlay_jpeg
    from service.heatmaps import float_map

    maps = [f for f in findings if f.heatmap is not None]
    files = {f"{f.method}.png": gray_png(f.heatmap) for f in maps} | {f"{f.method}.npy": float_map(f.heatmap) for f in maps}
    files |= {f"{f.method}_{view}.jpg": encode_jpeg(pixels) for f in findings for view, pixels in f.views.items()}
    if fused.heatmap is not None:
        files |= {"fused.png": gray_png(fused.heatmap), "overlay.jpg": overlay_jpeg(image.rgb, fused.heatmap)}
    metadata = next((m for m in map(extraction, findings) if m is not None), None)  # read once, as the join does
    report = {"image": file_info(image), "metadata": metadata, **fused.to_dict(), "findings": [f.to_dict() for f in findings]}
    files["report.json"] = json.dumps(report, default=str).encode()
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def bench_throughput(api: ApiServer, receiver: Receiver, images: list[bytes]) -> float:
    """Images per minute from the POST of one case with ``images`` to the signed ``case.completed``
    webhook at its ``callback_url``: the way an integration learns of the end, at once and without
    polls (a client polling 4 times a second, as this benchmark did before, takes about 2 % of the
    two cores from the workers, in the API and Postgres)."""
    files = [("images", (f"photo_{i:03d}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    path = f"/done-{uuid.uuid4().hex}"
    with httpx.Client(headers=AUTH, timeout=600) as client:
        receiver.secrets[path] = client.get(f"{api.base}/v1/webhooks/callback-secret").json()["secret"]
        start = time.monotonic()  # the receiver stamps each delivery with time.monotonic()
        response = client.post(f"{api.base}/v1/cases", files=files, data={"callback_url": receiver.url(path)})
        response.raise_for_status()
        while not receiver.at(path):
            time.sleep(0.05)
        elapsed = receiver.at(path)[0].at - start
        body = client.get(response.headers["location"]).json()
    event = receiver.at(path)[0]
    assert event.verified and event.payload is not None and event.payload["type"] == "case.completed", event
    assert body["progress"]["completed"] == len(images), body["progress"]
    return len(images) / elapsed * 60


def bench_throughput_rounds(api: ApiServer, env: dict[str, str], home: Path, args: argparse.Namespace) -> None:
    """The engine alone, then ``args.rounds`` service batches interleaved with runs of the engine
    processes writing the evidence files; prints the figures and where the worker's time goes."""
    per_worker = args.images // args.workers
    images = _variants(test_jpeg(args.megapixels), args.workers + args.images * (args.rounds + 1))
    warm_up = images[: args.workers]
    batches = [images[args.workers + i * args.images :][: args.images] for i in range(args.rounds + 1)]
    threaded, single = bench_engine(batches[0])
    bare, engine_methods = bench_engine_processes(args.workers, per_worker, args.megapixels, False)
    print(
        f"engine, one process: {threaded:6.1f} images/min (methods in threads, all cores), {single:6.1f} (methods in one "
        f"thread); {args.workers} engine processes at once, one core each: {bare:6.1f}"
    )
    worker = Worker(env, home / "worker.log", "bench", beat=False, concurrency=args.workers)
    receiver = Receiver().start()
    try:
        bench_throughput(api, receiver, warm_up)  # as the engine is warmed up: imports, first calls, connections
        (home / "worker.log").write_text("")  # count the measured cases' tasks only
        engine = [bench_engine_processes(args.workers, per_worker, args.megapixels, True)[0]]
        ratios = []
        cpu = {"pool user": 0.0, "pool system": 0.0, "rest of the machine": 0.0, "idle": 0.0}
        for round_, batch in enumerate(batches[1:], 1):
            (user, system), (busy, idle) = _pool_cpu_seconds(worker), _machine_seconds()
            service = bench_throughput(api, receiver, batch)  # a new batch each round: nothing is reused by hash
            (user2, system2), (busy2, idle2) = _pool_cpu_seconds(worker), _machine_seconds()
            cpu["pool user"] += user2 - user
            cpu["pool system"] += system2 - system
            cpu["rest of the machine"] += busy2 - busy - (user2 - user) - (system2 - system)
            cpu["idle"] += idle2 - idle
            engine.append(bench_engine_processes(args.workers, per_worker, args.megapixels, True)[0])
            ratios.append(service / statistics.mean(engine[-2:]))
            print(
                f"round {round_}: engine processes writing the evidence files {engine[-2]:6.1f}, service "
                f"({args.images} x {args.megapixels:g} MP JPEG, {args.workers} worker processes) {service:6.1f}, engine "
                f"again {engine[-1]:6.1f} images/min: service {ratios[-1]:.0%} of the engine around it"
            )
    finally:
        receiver.stop()
        worker.stop()
    print(f"service / engine writing the same files, median of {args.rounds} rounds: {statistics.median(ratios):.0%}")
    measured = args.images * args.rounds
    busy = _task_seconds(home / "worker.log")
    per_image = ", ".join(f"{name} {seconds / measured:.2f}" for name, seconds in busy.items())
    decodes = (home / "worker.log").read_text(errors="replace").count("] decoded ")
    method, overhead, storing, by_method = _method_split(home / "worker.log")
    print(f"worker busy seconds per image by task: {per_image}; decodes per image {decodes / measured:.1f}")
    print("CPU seconds per image during the service batches: " + ", ".join(f"{k} {v / measured:.3f}" for k, v in cpu.items()))
    print(
        f"run_method per image: methods {method / measured:.2f} s, decode and task overhead "
        f"{overhead / measured:.2f} s, storing {storing / measured:.2f} s"
    )
    print(
        "seconds per image by method, service / bare engine processes: "
        + ", ".join(f"{n} {by_method.get(n, 0.0) / measured:.3f} / {engine_methods[n]:.3f}" for n in engine_methods)
        + f"; all {method / measured:.2f} / {sum(engine_methods.values()):.2f}"
    )


async def _load(clients: int, total: int, request) -> list[float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    remaining = iter(range(total))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            start = time.perf_counter()
            response = await request(client)
            latencies.append(time.perf_counter() - start)
            assert response.status_code < 300, response.text

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=AUTH) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return latencies


async def _paced(clients: int, seconds: float, interval: float, request) -> list[float]:  # type: ignore[no-untyped-def]
    """``clients`` clients, each sending ``request`` every ``interval`` s for ``seconds`` (starts spread evenly)."""
    latencies: list[float] = []

    async def client_loop(client: httpx.AsyncClient, offset: float) -> None:
        await asyncio.sleep(offset)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            response = await request(client)
            latencies.append(time.perf_counter() - start)
            assert response.status_code < 300, response.text
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=AUTH) as client:
        await asyncio.gather(*(client_loop(client, i * interval / clients) for i in range(clients)))
    return latencies


def bench_latency(api: ApiServer, clients: int, polls: int, creates: int, photo: bytes) -> dict[str, list[float]]:
    case_url = httpx.post(f"{api.base}/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))], headers=AUTH).headers["location"]
    single_polls = asyncio.run(_load(1, 200, lambda c: c.get(case_url)))
    single_creates = asyncio.run(
        _load(1, 30, lambda c: c.post(f"{api.base}/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))]))
    )
    paced = asyncio.run(_paced(clients, 20.0, 0.5, lambda c: c.get(case_url)))
    paced_creates = asyncio.run(
        _paced(clients, 30.0, 5.0, lambda c: c.post(f"{api.base}/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))]))
    )
    poll_latencies = asyncio.run(_load(clients, polls, lambda c: c.get(case_url)))
    create_latencies = asyncio.run(
        _load(clients, creates, lambda c: c.post(f"{api.base}/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))]))
    )
    return {
        "single_polls": single_polls,
        "single_creates": single_creates,
        "paced": paced,
        "paced_creates": paced_creates,
        "polls": poll_latencies,
        "creates": create_latencies,
    }


def _multipart_stream(boundary: str, part: bytes, count: int) -> Iterator[bytes]:
    for i in range(count):
        yield (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"big_{i:04d}.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        for offset in range(0, len(part), 256 * 1024):
            yield part[offset : offset + 256 * 1024]
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def bench_memory(api: ApiServer, photo: bytes, gigabytes: float) -> tuple[float, int, float, float, float, float]:
    count = max(1, int(gigabytes * 1e9 / len(photo)))
    boundary = uuid.uuid4().hex
    before = api.rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], api.rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        response = httpx.post(
            f"{api.base}/v1/cases",
            content=_multipart_stream(boundary, photo, count),
            headers={"content-type": f"multipart/form-data; boundary={boundary}", **AUTH},
            timeout=1200,
        )
        response.raise_for_status()
    finally:
        stop.set()
        sampler.join()
    return count * len(photo) / 1e9, count, time.perf_counter() - start, before, peak[0], api.rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images in the throughput case (a bigger batch spreads its first upload and its last image over more work, as a newsroom batch of hundreds does)")
    parser.add_argument("--rounds", type=int, default=3, help="service batches, each between two runs of the engine processes writing the evidence files")
    parser.add_argument("--megapixels", type=float, default=12)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one celery worker, prefork)")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--upload-gb", type=float, default=1.0)
    parser.add_argument("--burst-mb", type=float, default=5.0, help="size of the JPEG each case creation of the burst sends")
    parser.add_argument("--skip", default="", help="comma list of burst, throughput, latency, memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from forensics.methods import REGISTRY

    print(f"methods: {', '.join(REGISTRY)}")
    home = Path(tempfile.mkdtemp(prefix="forensics-bench-"))
    run = uuid.uuid4().hex[:8]
    with postgres_database() as db_url:
        env = {
            "DATABASE_URL": db_url,
            "BROKER_URL": "redis://127.0.0.1:6379/13",
            "FORENSICS_BROKER_KEY_PREFIX": f"forensics-bench-{run}:",
            "STORAGE_URL": (home / "storage").as_uri(),
            "FORENSICS_HOME": str(home),
            # counted in Redis like in production, but high enough never to refuse the load generator
            "FORENSICS_RATE_LIMIT_PER_MINUTE": "100000000",
            "FORENSICS_WEBHOOK_ALLOWLIST": f"{HOST}/32",  # the loopback receiver of the case.completed webhooks
        }
        with environment(env):
            AUTH.update(bearer(make_tenant("bench")[1]))
        api = ApiServer(env, home / "api.log", args.api_workers)
        try:
            if "burst" not in skip:
                sent = _jpeg_of_size(test_jpeg(min(12.0, max(0.5, 2.4 * args.burst_mb))), args.burst_mb)  # about 2.4 MP a MB at q95
                for when in ("opening", "second"):
                    burst = asyncio.run(_load(args.clients, args.clients, lambda c: c.post(
                        f"{api.base}/v1/cases", files=[("images", ("a.jpg", sent, "image/jpeg"))])))
                    print(f"case creation ({len(sent) / 1e6:.1f} MB), {args.clients} at once, {when} burst: {_percentiles(burst)}")
            if "throughput" not in skip:
                bench_throughput_rounds(api, env, home, args)
            photo = test_jpeg(12)
            if "latency" not in skip:
                photo5 = _jpeg_of_size(photo, 5.0)
                measured = bench_latency(api, args.clients, args.polls, args.creates, photo5)
                print(f"status poll, one client:                               {_percentiles(measured['single_polls'])}")
                print(f"case creation ({len(photo5) / 1e6:.1f} MB), one client:               {_percentiles(measured['single_creates'])}")
                print(f"status poll, {args.clients} clients each polling every 0.5 s:  {_percentiles(measured['paced'])}")
                print(f"status poll, {args.clients} clients back to back (saturated): {_percentiles(measured['polls'])}")
                print(f"case creation ({len(photo5) / 1e6:.1f} MB), {args.clients} clients each every 5 s: "
                      f"{_percentiles(measured['paced_creates'])}")
                print(f"case creation ({len(photo5) / 1e6:.1f} MB), {args.clients} clients back to back: "
                      f"{_percentiles(measured['creates'])}")
            if "memory" not in skip:
                size, files, seconds, before, peak, after = bench_memory(api, photo, args.upload_gb)
                print(
                    f"one request of {files} files, {size:.2f} GB: 202 after {seconds:.1f} s; API memory "
                    f"{before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after"
                )
        finally:
            api.stop()
            import redis

            client = redis.Redis.from_url(env["BROKER_URL"])
            for key in client.scan_iter(f"forensics-bench-{run}:*"):
                client.delete(key)
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
