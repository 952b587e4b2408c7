"""A real HTTP receiver on loopback for the integration tests: verifies Standard Webhooks
signatures with the ``standardwebhooks`` package, answers as planned per path, and serves
files (for URL ingestion) including a redirect."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.platform_support import free_port

#: The receiver's address: loopback, but not 127.0.0.1, so that the allow-list can let it
#: through while 127.0.0.1, ::1 and localhost stay refused.
HOST = "127.0.0.2"


@dataclass
class Received:
    path: str
    webhook_id: str
    timestamp: str
    payload: dict[str, Any] | None
    verified: bool
    at: float


@dataclass
class Receiver:
    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    plans: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port(HOST)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def plan(self, path: str, *answers: tuple[int, dict[str, str]]) -> None:
        """Answers in order; the last one repeats."""
        self.plans[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                secret = receiver.secrets.get(self.path)
                payload, verified = None, False
                if secret is not None:
                    try:
                        payload = Webhook(secret).verify(body, headers)
                        verified = True
                    except WebhookVerificationError:
                        payload = json.loads(body)
                receiver.received.append(
                    Received(self.path, headers.get("webhook-id", ""), headers.get("webhook-timestamp", ""), payload, verified, time.monotonic())
                )
                plan = receiver.plans.get(self.path) or [(200, {})]
                status, extra = plan.pop(0) if len(plan) > 1 else plan[0]
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", receiver.url("/files/a.png"))
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                data = receiver.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((HOST, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
