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
worker's memory until they are acknowledged), and nothing else would take them up: in this
setup there is no second worker. So a worker that exits while ``serve`` runs (the kernel's
out-of-memory killer, a crash) is replaced: ``serve`` checks it every
:data:`WATCH_SECONDS`, kills what is left of its process group, sends everything in flight
again (:func:`service.analysis.reconcile` with ``workers_gone``) and starts a new worker, after
a growing pause when the workers keep dying within :data:`CRASH_LOOP_SECONDS` of their start.
And ``serve`` marks a worker that stopped by itself (``$FORENSICS_HOME/worker-stopped``); the
next start without that mark (``serve`` and its worker killed together), before its worker
starts, sends everything in flight again the same way, rather than leaving it to the
reconciler's ``FORENSICS_REQUEUE_AFTER``.
"""

import contextlib
import ctypes
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
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
#: Seconds between two checks that the worker still runs.
WATCH_SECONDS = 1.0
#: A worker that dies within this many seconds of its start counts as a crash loop: the next one
#: starts after a pause, :data:`FIRST_RESTART_PAUSE` and then doubled each time, at most
#: :data:`MAX_RESTART_PAUSE`.
CRASH_LOOP_SECONDS = 60.0
FIRST_RESTART_PAUSE = 2.0
MAX_RESTART_PAUSE = 60.0
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
    """uvicorn's server without its signal handling: :class:`_Supervisor` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Supervisor:
    """Keeps one worker running while ``serve`` serves, and stops it when ``serve`` stops.

    It is the handler of SIGTERM and SIGINT: the first stops the API and the worker in order,
    with a deadline for the worker; a second one stops both at once. :meth:`watch`, in a thread
    of its own, replaces a worker that exits while no stop was asked for: ``resend`` sends what
    it held again, ``start`` starts the next one."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], resend: Callable[[], None], stopped_mark: Path) -> None:
        self.start = start
        self.resend = resend
        self.worker = start()
        self.started_at = time.monotonic()
        self.stopped_mark = stopped_mark
        self.server: uvicorn.Server | None = None
        self.deadline: float | None = None
        self.watcher = threading.Thread(target=self.watch, name="worker-watch", daemon=True)

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

    def watch(self) -> None:
        """Until a stop: replace a worker that exited. What it held is sent again first (its
        taken messages died with it; copies of any that survived are refused by the claims)."""
        pause = 0.0
        while self.deadline is None:
            time.sleep(WATCH_SECONDS)
            worker = self.worker
            if self.deadline is not None or worker.poll() is None:
                continue
            lived = time.monotonic() - self.started_at
            pause = min(MAX_RESTART_PAUSE, max(FIRST_RESTART_PAUSE, 2 * pause)) if lived < CRASH_LOOP_SECONDS else 0.0
            logger.error(
                "the worker exited (status %s) after %.0f s while serving: sending its work again and starting a new one%s",
                worker.returncode, lived, f" in {pause:.0f} s" if pause else "",
            )
            _kill_group(worker)  # its pool processes and beat, should any outlive it
            resume = time.monotonic() + pause
            while self.deadline is None and time.monotonic() < resume:
                time.sleep(min(WATCH_SECONDS, max(0.0, resume - time.monotonic())))
            if self.deadline is not None:
                return
            self.started_at = time.monotonic()  # a start that fails counts as a worker that died at once
            try:
                self.resend()
            except Exception:  # noqa: BLE001 - the worker matters more; the reconciler re-sends later
                logger.exception("sending the work in flight again failed")
            try:
                self.worker = self.start()
            except OSError:
                logger.exception("the new worker could not be started")
                continue
            if self.deadline is not None:  # a stop signal came while it started
                _signal_worker(self.worker, signal.SIGTERM)

    def wait_for_worker(self) -> None:
        """Stop the worker (if no signal did) and wait for it until the deadline, then kill it;
        then kill whatever of its process group is left (nothing, when Celery stopped cleanly)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + WORKER_STOP_SECONDS
            _signal_worker(self.worker, signal.SIGTERM)
        if self.watcher.is_alive():
            self.watcher.join()  # within WATCH_SECONDS, or once a replacement in progress has started
        try:
            self.worker.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            logger.info("the worker stopped (exit status %s)", self.worker.returncode)
            if self.worker.returncode == 0:  # a cold shutdown put what it had taken back in the queue
                self.stopped_mark.touch()
        except subprocess.TimeoutExpired:
            logger.warning("the worker did not stop within %.0f s of the signal: killing it", WORKER_STOP_SECONDS)
            _signal_worker(self.worker, signal.SIGKILL, group=True)
            self.worker.wait()
        _kill_group(self.worker)


def _signal_worker(worker: subprocess.Popen[bytes], signum: int, *, group: bool = False) -> None:
    """Send ``signum`` to the worker, or to its whole process group, unless it has exited. Safe in
    a signal handler: ``poll`` never blocks on the lock that a ``wait`` in progress holds."""
    if worker.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(worker.pid, signum)
            else:
                os.kill(worker.pid, signum)


def _kill_group(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of an exited worker's process group (its pool processes and beat).
    The group's id stays reserved while any member lives, so this reaches only the worker's own."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)


def _resend_in_flight() -> None:
    """Send again everything in flight: only while no worker runs on this home."""
    from service.analysis import reconcile  # after _share_metrics: it imports prometheus_client

    if reconcile(workers_gone=True):
        logger.info("the last worker did not stop by itself: what was in flight is sent again")


def _resend_if_worker_killed(stopped_mark: Path) -> None:
    """Before the worker starts: unless the last one stopped by itself, send again what was in
    flight (its taken messages may have died with it); then clear the mark for this run. The
    home's lock says that no worker of an earlier ``serve`` still runs."""
    if stopped_mark.exists():
        stopped_mark.unlink()
        return
    _resend_in_flight()


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
    supervisor = _Supervisor(functools.partial(_start_worker, settings, home_lock), _resend_in_flight, stopped_mark)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor)
    try:
        supervisor.watcher.start()
        from api.main import app

        config = uvicorn.Config(app, host=host, port=port, log_config=logging_config(), timeout_graceful_shutdown=API_STOP_SECONDS)
        supervisor.server = _Server(config)
        supervisor.server.should_exit = supervisor.deadline is not None  # a signal came while the API was loading
        supervisor.server.run()
    finally:
        supervisor.wait_for_worker()
