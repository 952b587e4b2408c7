"""Embedded mode: the API and a worker on one machine with no external server.

SQLite, a local storage folder and Celery's filesystem transport, all under
``FORENSICS_HOME`` (default ``./forensics-data``): the same code paths as the distributed
setup, selected only by the settings' defaults. ``forensics serve`` calls :func:`serve`.

On first start (no tenant yet) a tenant ``default`` is made with one API key: the value of
``FORENSICS_API_KEY`` when set, else a new key printed once on standard error.

One ``serve`` per home: it locks ``$FORENSICS_HOME/serve.lock`` (and its worker holds the lock
too, through the inherited descriptor, until it has exited), so a second one on the same home
stops at once with :class:`HomeInUse` instead of sharing the database and the broker folder.

Stopping: SIGTERM (systemd, Docker) or SIGINT (Ctrl-C), sent to ``serve`` or to its whole
process group, stops everything within :data:`WORKER_STOP_SECONDS`. ``serve`` handles both
signals itself (uvicorn's own handling re-raises SIGTERM once the API has stopped, which
killed ``serve`` before it could stop the worker): the API stops taking requests, and the
worker, a process group of its own, gets SIGTERM, which Celery is told to treat as a cold
shutdown (``REMAP_SIGTERM``): running tasks get ``FORENSICS_WORKER_SOFT_SHUTDOWN_SECONDS``
to finish, the others are stopped and, acknowledged only once done, go back to the queue for
the next start. A worker still running at the deadline is killed with its pool and beat (a
cold shutdown of Celery's prefork pool can deadlock on a pipe lock that a stopped pool process
held). A second signal kills at once. Should ``serve`` itself die, the kernel sends the worker
SIGTERM (``PR_SET_PDEATHSIG``).

The messages a killed worker had taken die with it (the filesystem transport keeps them in the
worker's memory until they are acknowledged). So ``serve`` marks a worker that stopped by
itself (``$FORENSICS_HOME/worker-stopped``); the next start without that mark, before its
worker starts, sends everything in flight again (:func:`service.analysis.reconcile` with
``workers_gone``), rather than leaving it to the reconciler's ``FORENSICS_REQUEUE_AFTER``.
"""

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from service.db import migrate, session_scope
from service.logs import logging_config
from service.settings import Settings, get_settings
from service.tenants import ensure_first_key

logger = logging.getLogger(__name__)

#: Seconds from a stop signal until a worker that has not stopped is killed: its tasks' soft
#: shutdown, then Celery's own stop (about 2 s), with room to spare, and under the 20 s that
#: an operator may wait (systemd waits 90 s before it kills, ``docker stop`` 10 s by default).
WORKER_STOP_SECONDS = 15.0
#: Seconds the API gives requests in progress when it stops.
API_STOP_SECONDS = 5
#: ``prctl`` option: the signal this process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class HomeInUse(RuntimeError):
    """Another ``forensics serve``, or the worker of one that is still stopping, uses this home."""


def _claim_home(home: Path) -> int:
    """An exclusive lock on ``home/serve.lock`` (its descriptor, kept open for the process's life
    and passed to the worker): the kernel releases it only once ``serve`` and its worker are both
    gone, however they end. So whatever the last worker left in flight when ``serve`` starts is
    truly abandoned (see :func:`_resend_if_worker_killed`)."""
    fd = os.open(home / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HomeInUse(f"{home} is in use by another forensics serve (or its worker, still stopping)") from None
    return fd


def worker_command(concurrency: int | None = None) -> list[str]:
    """The Celery worker (with the reconciler's beat embedded) as a child process of ``serve``."""
    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--beat",
        "--schedule",
        str(settings.home / "beat-schedule"),
        "--concurrency",
        str(concurrency or os.cpu_count() or 1),
        "--hostname",
        "embedded@%h",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
    ]


def _share_metrics(settings: Settings) -> None:
    """The API and the worker count in one multiprocess folder (``$FORENSICS_HOME/metrics`` unless
    ``PROMETHEUS_MULTIPROC_DIR`` says otherwise), emptied at each start. Set, and made, before
    prometheus_client is first imported (with ``api.main``): it chooses its mode then, and the
    module's counters open their files in the folder as it is imported."""
    folder = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.home / "metrics")))
    folder.mkdir(parents=True, exist_ok=True)
    from service.metrics import empty_folder  # after the variable, see above

    empty_folder(folder)


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when ``serve`` dies, however
    it dies; a no-op where there is no ``prctl`` (not Linux)."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded here: not between fork and exec
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # serve died before the line above: nobody will stop this worker
            os._exit(1)

    return arm


def _start_worker(settings: Settings, home_lock: int) -> subprocess.Popen[bytes]:
    """The worker in a session (and process group) of its own, so that a signal to ``serve``'s
    group reaches ``serve`` alone, which stops the worker in order; SIGTERM means a bounded
    cold shutdown to it and its pool (their SIGTERM is ignored, SIGQUIT stops them). It
    inherits the home's lock (see :func:`_claim_home`)."""
    env = {**os.environ, "FORENSICS_HOME": str(settings.home), "REMAP_SIGTERM": "SIGQUIT"}
    with (settings.home / "worker.log").open("ab") as log:
        return subprocess.Popen(
            worker_command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
            pass_fds=(home_lock,),
        )


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: :class:`_Stop` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Stop:
    """The handler of SIGTERM and SIGINT: the first stops the API and the worker in order, with a
    deadline for the worker; a second one stops both at once."""

    def __init__(self, worker: subprocess.Popen[bytes], stopped_mark: Path) -> None:
        self.worker = worker
        self.stopped_mark = stopped_mark
        self.server: uvicorn.Server | None = None
        self.deadline: float | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        first = self.deadline is None
        if first:
            self.deadline = time.monotonic() + WORKER_STOP_SECONDS
            logger.info("%s: stopping the API and the worker", signal.Signals(signum).name)
            _signal_worker(self.worker, signal.SIGTERM)
        else:
            logger.warning("%s again: killing the worker", signal.Signals(signum).name)
            _signal_worker(self.worker, signal.SIGKILL, group=True)  # reaped by wait_for_worker
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = not first

    def wait_for_worker(self) -> None:
        """Stop the worker (if no signal did) and wait for it until the deadline, then kill it;
        then kill whatever of its process group is left (nothing, when Celery stopped cleanly)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + WORKER_STOP_SECONDS
            _signal_worker(self.worker, signal.SIGTERM)
        try:
            self.worker.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            logger.info("the worker stopped (exit status %s)", self.worker.returncode)
            if self.worker.returncode == 0:  # a cold shutdown put what it had taken back in the queue
                self.stopped_mark.touch()
        except subprocess.TimeoutExpired:
            logger.warning("the worker did not stop within %.0f s of the signal: killing it", WORKER_STOP_SECONDS)
            _signal_worker(self.worker, signal.SIGKILL, group=True)
            self.worker.wait()
        # The group's id stays reserved while any member lives, so this reaches only the worker's own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)


def _signal_worker(worker: subprocess.Popen[bytes], signum: int, *, group: bool = False) -> None:
    """Send ``signum`` to the worker, or to its whole process group, unless it has exited. Safe in
    a signal handler: ``poll`` never blocks on the lock that a ``wait`` in progress holds."""
    if worker.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(worker.pid, signum)
            else:
                os.kill(worker.pid, signum)


def _resend_if_worker_killed(stopped_mark: Path) -> None:
    """Before the worker starts: unless the last one stopped by itself, send again what was in
    flight (its taken messages may have died with it); then clear the mark for this run. The
    home's lock says that no worker of an earlier ``serve`` still runs."""
    if stopped_mark.exists():
        stopped_mark.unlink()
        return
    from service.analysis import reconcile  # after _share_metrics: it imports prometheus_client

    if reconcile(workers_gone=True):
        logger.info("the last worker did not stop by itself: what was in flight is sent again")


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Migrate the database, start a worker process, and serve the API until SIGTERM or SIGINT.

    Raises :class:`HomeInUse` when another ``serve`` uses the same home."""
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    home_lock = _claim_home(settings.home)
    migrate()
    with session_scope() as session:
        key = ensure_first_key(session, settings.api_key)
    if key is not None and settings.api_key is None:
        # the one moment the key exists in clear: the user must see it (it is stored only as a hash)
        sys.stderr.write(f"\nAPI key of tenant 'default' (shown once, keep it): {key}\n"
                         f"  curl -H 'Authorization: Bearer {key}' http://{host}:{port}/v1/cases\n\n")
        sys.stderr.flush()
    _share_metrics(settings)
    stopped_mark = settings.home / "worker-stopped"
    _resend_if_worker_killed(stopped_mark)
    stop = _Stop(_start_worker(settings, home_lock), stopped_mark)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        from api.main import app

        config = uvicorn.Config(app, host=host, port=port, log_config=logging_config(), timeout_graceful_shutdown=API_STOP_SECONDS)
        stop.server = _Server(config)
        stop.server.should_exit = stop.deadline is not None  # a signal came while the API was loading
        stop.server.run()
    finally:
        stop.wait_for_worker()
