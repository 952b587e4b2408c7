"""Web page benchmark: time to an interactive image page for a 24 MP image, after its case completed.

    .venv/bin/python bench/bench_web.py [--megapixels 24] [--views 10] [--methods all]

Runs against the real services of this machine, as the distributed setup runs them: Postgres
(a throwaway database), Redis (a key prefix), a local storage folder, a ``uvicorn`` API process
and a ``celery worker``; the browser is Debian's Chromium, headless, driven by Playwright. The
photo is a real camera JPEG from ../shared/data (dresden_natural) resized to the size asked for
and re-encoded at quality 92. Once its case has completed, the image page is opened in a fresh
browser context each time (no cached pictures), signed in, and timed from the navigation's
start to the viewer's first complete drawing of the picture with the fused map over it
(``document.body.dataset.ready``, set by image.js), as the browser's clock measures it:

- first view: the page's first request since the case completed (the worker's join stored the
  display rendition; the API renders the image page's template for the first time);
- later views: median and slowest of ``--views``.

Also printed: what the page fetched for it (HTML, display rendition, fused map) against the
original's size, which the page never fetches unless asked. Target: <= 1 s.
"""

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.platform_support import ApiServer, Worker, bearer, environment, make_tenant, poll, postgres_database  # noqa: E402
from tests.web_support import VIEWPORT, launch, sign_in  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "dresden_natural" / "authentic" / "natural"


def photo(megapixels: float) -> bytes:
    """A camera photo resized to ``megapixels`` (3:2) and saved at quality 92, its EXIF kept."""
    from PIL import Image

    candidates = sorted(SOURCE.glob("*.JPG"))
    if not candidates:
        raise SystemExit(f"no photo in {SOURCE}: the benchmark needs ../shared/data")
    with Image.open(candidates[0]) as source:
        width = round((megapixels * 1e6 * 3 / 2) ** 0.5)
        resized = source.convert("RGB").resize((width, round(width * 2 / 3)), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        resized.save(out, "JPEG", quality=92, exif=source.info.get("exif", b""))
    return out.getvalue()


def time_to_interactive(browser: object, state: dict, url: str) -> tuple[float, dict[str, int]]:
    """Seconds from navigation start to the viewer's first drawing, in a fresh context; and the bytes fetched per kind."""
    context = browser.new_context(viewport=VIEWPORT, storage_state=state)  # type: ignore[attr-defined]
    page = context.new_page()
    fetched: dict[str, int] = {}

    def record(response: object) -> None:
        name = response.url.rsplit("/", 1)[-1].split("?")[0]  # type: ignore[attr-defined]
        try:
            fetched[name] = len(response.body())  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a redirect or an aborted request has no body
            pass

    page.on("response", record)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    seconds = page.evaluate("performance.now()") / 1000  # since the navigation started
    context.close()
    return seconds, fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--methods", default="all", help="comma list of methods the worker runs, or all")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    data = photo(args.megapixels)
    home = Path(tempfile.mkdtemp(prefix="forensics-bench-web-"))
    with postgres_database() as db_url:
        env = {
            "DATABASE_URL": db_url,
            "BROKER_URL": "redis://127.0.0.1:6379/13",
            "FORENSICS_BROKER_KEY_PREFIX": f"forensics-bench-web-{uuid.uuid4().hex[:8]}:",
            "STORAGE_URL": (home / "storage").as_uri(),
            "FORENSICS_HOME": str(home),
            "FORENSICS_METHODS": "" if args.methods == "all" else args.methods,
        }
        with environment(env):
            _, key = make_tenant("bench")
        worker = Worker(env, home / "worker.log", "bench-web")
        api = ApiServer(env, home / "api.log")
        try:
            started = time.monotonic()
            created = httpx.post(f"{api.base}/v1/cases", headers=bearer(key), timeout=120,
                                 files=[("images", ("photo.jpg", data, "image/jpeg"))]).json()
            case = poll(lambda: httpx.get(f"{api.base}/v1/cases/{created['id']}", headers=bearer(key)).json(),
                        lambda body: body["status"] in ("completed", "failed"), 1800, "case end")
            image = case["images"][0]
            print(f"photo: {len(data) / 1e6:.1f} MB JPEG, {args.megapixels:g} MP; case {case['status']} in {time.monotonic() - started:.0f} s"
                  f" (methods: {args.methods})")
            url = f"{api.base}/cases/{case['id']}/images/{image['id']}"
            with sync_playwright() as playwright:
                browser = launch(playwright)
                context = browser.new_context(viewport=VIEWPORT)
                sign_in(context.new_page(), api.base, key)
                state = context.storage_state()
                context.close()
                first, fetched = time_to_interactive(browser, state, url)
                later = sorted(time_to_interactive(browser, state, url)[0] for _ in range(args.views))
                browser.close()
            print(f"time to interactive image page, first view: {first:.2f} s")
            print(f"time to interactive image page, later views: median {statistics.median(later):.2f} s, "
                  f"slowest {later[-1]:.2f} s of {args.views}")
            page_bytes = {name: size for name, size in fetched.items() if name in (image["id"], "display.jpg", "fused.png")}
            print("fetched for it: " + ", ".join(f"{name if name != image['id'] else 'HTML'} {size / 1e3:.0f} KB"
                                                  for name, size in page_bytes.items())
                  + f"; the original ({len(data) / 1e6:.1f} MB) is not fetched")
        finally:
            api.stop()
            worker.stop()


if __name__ == "__main__":
    main()
