"""Prometheus metrics of the service: what the API and the workers count, and what a scrape reads.

The API runs several uvicorn processes and a worker a pool of processes, so the metrics use
prometheus_client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set (before
prometheus_client is first imported: it chooses its mode then) every process writes its
values to files there, and a scrape merges the files of the folder. The folder must be
empty when the service starts (see :func:`empty_folder`) and belongs to one machine; without
the variable each process counts for itself (the tests' in-process API).

Counters and histograms are recorded where things happen (``api.observability``,
``worker.observability``, :mod:`service.analysis`, :mod:`service.webhooks.delivery`); the state of
the service (cases and images in flight, queue depths) is read from the database and the
broker at scrape time by :class:`ServiceCollector`, in the API only.
"""

import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from service.db import session_scope
from service.models import IMAGE_DONE, Case, CaseStatus, Image, ImageStatus
from service.queue import QUEUES, get_celery

logger = logging.getLogger(__name__)

#: Seconds of tasks and methods: from a join's tenth of a second to a method's time limit.
WORK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

HTTP_REQUESTS = Counter(
    "forensics_http_requests", "HTTP requests answered, by method, route template and status", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "forensics_http_request_duration_seconds", "Seconds from a request's arrival to its response's end", ["method", "route"]
)
TASKS = Counter("forensics_tasks", "Tasks run by the workers, by task name and outcome (success, failure, retry)", ["task", "outcome"])
TASK_SECONDS = Histogram("forensics_task_duration_seconds", "Seconds a task ran", ["task", "outcome"], buckets=WORK_BUCKETS)
TASKS_RUNNING = Gauge("forensics_tasks_running", "Tasks running now", ["task"], multiprocess_mode="livesum")
METHOD_SECONDS = Histogram(
    "forensics_method_seconds", "Seconds of one forensic method on one image (its finding's status)", ["method", "status"],
    buckets=WORK_BUCKETS,
)
WEBHOOK_ATTEMPTS = Counter(
    "forensics_webhook_attempts", "Webhook delivery attempts, by result (delivered, retrying, failed: given up)", ["event_type", "result"]
)
RECONCILER_REPAIRS = Counter("forensics_reconciler_repairs", "Lost or stuck work the reconciler repaired, by kind", ["kind"])
LOST_CLAIMS = Counter(
    "forensics_lost_claims_given_back", "Method claims given back at once because the pool process running them died, by method", ["method"]
)
RATE_LIMIT_FAILED_OPEN = Counter(
    "forensics_rate_limit_failed_open",
    "Requests served uncounted because the rate-limit store (Redis) was unreachable, by limit (requests, images)",
    ["limit"],
)
PUBLISH_FAILURES = Counter(
    "forensics_publish_failures", "Task messages that could not be published (left to the reconciler), by task", ["task"]
)


def multiprocess_folder() -> Path | None:
    """The multiprocess folder, or None when each process counts for itself."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder else None


def empty_folder(folder: Path) -> None:
    """Remove what earlier runs left in ``folder`` (made if missing), as prometheus_client asks at
    each start: the files of dead processes would otherwise be summed into the new run's values.
    Call it in the one process that starts the others, before they start."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


def _forget_dead_processes(folder: Path) -> None:
    """``mark_process_dead`` for every process that left a live gauge and is gone (a pool process
    recycled or killed, an API process restarted): its running tasks no longer count. The
    processes of a folder share the machine, so their ids can be checked here."""
    for path in glob.glob(str(folder / "gauge_live*_*.db")):
        match = re.search(r"_(\d+)\.db$", path)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, str(folder))
        except PermissionError:  # alive, another user's
            pass


class _ThisProcess(Collector):
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return PROCESS_REGISTRY.collect()


class _AllProcesses(Collector):
    """The values of every process of the multiprocess folder, merged at each scrape."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.merged = MultiProcessCollector(None, path=str(folder))

    def collect(self) -> Iterable[Metric]:
        _forget_dead_processes(self.folder)
        return self.merged.collect()


def registry(*extra: Collector) -> CollectorRegistry:
    """A registry of every process's values (or this process's, without a multiprocess folder) and ``extra``."""
    scrape = CollectorRegistry()
    folder = multiprocess_folder()
    scrape.register(_AllProcesses(folder) if folder is not None else _ThisProcess())
    for collector in extra:
        scrape.register(collector)
    return scrape


def exposition(*extra: Collector) -> bytes:
    """The text a scrape receives (Prometheus text format 0.0.4)."""
    return generate_latest(registry(*extra))


class ServiceCollector(Collector):
    """The service's state, read when scraped: cases and images not finished (database) and
    messages waiting in each queue (broker). A source that cannot be read is left out of the
    scrape (and logged) rather than failing it: the other metrics matter most during an outage."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._in_flight()
        except Exception:  # noqa: BLE001 - the database is down: serve the rest
            logger.warning("metrics: cases and images in flight not read", exc_info=True)
        try:
            yield self._queue_depth()
        except Exception:  # noqa: BLE001 - the broker is down: serve the rest
            logger.warning("metrics: queue depths not read", exc_info=True)

    @staticmethod
    def _in_flight() -> Iterator[Metric]:
        open_cases = (CaseStatus.QUEUED, CaseStatus.RUNNING)
        open_images = [s for s in ImageStatus if s not in IMAGE_DONE]
        with session_scope() as session:
            cases = dict(session.execute(select(Case.status, func.count()).where(Case.status.in_(open_cases)).group_by(Case.status)).all())
            images = dict(
                session.execute(select(Image.status, func.count()).where(Image.status.in_(open_images)).group_by(Image.status)).all()
            )
        cases_family = GaugeMetricFamily("forensics_cases_in_flight", "Cases not finished, by status", labels=["status"])
        for status in open_cases:
            cases_family.add_metric([status.value], cases.get(status.value, 0))
        images_family = GaugeMetricFamily("forensics_images_in_flight", "Images not finished, by status", labels=["status"])
        for status in open_images:
            images_family.add_metric([status.value], images.get(status.value, 0))
        yield cases_family
        yield images_family

    @staticmethod
    def _queue_depth() -> Metric:
        """Messages waiting per queue, as the transport counts them: the lengths of the Redis lists
        (every priority step, key prefix included), or the message files of the filesystem
        transport's folder. Messages taken by a worker and not yet acknowledged are not counted."""
        family = GaugeMetricFamily("forensics_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        # a connection of the app's pool, as publishing uses: no new broker connection at every scrape
        with get_celery().pool.acquire(block=True, timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)  # never the default: retry for ever
            channel = connection.default_channel
            for name in QUEUES:
                family.add_metric([name], channel.queue_declare(queue=name, passive=False).message_count)
        return family
