"""The web page end to end in real headless Chromium, against real services.

Distributed setup (Postgres, Redis, moto's S3 server over HTTP, a ``celery worker`` and a
``uvicorn`` API process): a person signs in with an API key, drops a batch with a file that is
no picture and a cut-short JPEG, watches the case complete, opens an image and moves the
threshold, inverts the mask, compares two pictures, downloads the dossier and signs out.
Files whose names and metadata carry markup are shown as text and run nothing. Another
tenant's ids give 404. The embedded setup (``forensics serve``) serves the same page, with
uploads through the API instead of presigned POSTs.
"""

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.platform_support import (
    REPO,
    ApiServer,
    Worker,
    bearer,
    data_file,
    environment,
    free_port,
    make_tenant,
    moto_s3,
    poll,
    postgres_database,
    service_env,
)
from tests.web_support import VIEWPORT, Watched, canvas_checksum, launch, next_frame, screenshot, screenshot_folder, sign_in

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is installed by scripts/bootstrap test")

pytestmark = pytest.mark.timeout(300)

#: Methods enough for maps, metadata and a flagged image, at a fraction of the full set's time.
METHODS = "metadata,ela,noise,jpeg"
TAMPERED = "Tp_S_NRN_S_N_pla00005_pla00005_10937.jpg"
CASE_TIMEOUT_MS = 150_000
MARKUP_NAME = "<img src=x onerror=window.__xss=1>.jpg"
MARKUP_EXIF = "<script>window.__xss=2</script>"
MARKUP_XMP = '<img src=x onerror="window.__xss=3">'


@dataclass
class Desk:
    base: str
    key: str
    other_key: str
    browser: Any
    shots: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def desk(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    home = tmp_path_factory.mktemp("web")
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = service_env(db_url, endpoint, home, "web", FORENSICS_METHODS=METHODS)
        with environment(env):
            _, key = make_tenant("Daily Courier")
            _, other_key = make_tenant("Another Newsroom")
        worker = Worker(env, home / "worker.log", "web")
        api = ApiServer(env, home / "api.log")
        try:
            yield Desk(api.base, key, other_key, browser, screenshot_folder(home))
        finally:
            api.stop()
            worker.stop()


def _jpeg(pixels: np.ndarray, **options: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def _batch() -> list[dict[str, Any]]:
    """Pictures, a re-edited copy of one (to compare), a text file named .jpg, a cut-short JPEG and a ZIP holding a PNG."""
    authentic = data_file("casia2_samples", "authentic/Au_ani_00003.jpg").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(authentic)).convert("RGB")).copy()
    pixels[40:110, 60:160] = pixels[140:210, 160:260]  # a region cloned over another
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inside/029_F.png", data_file("comofod_subset", "tampered/029_F.png").read_bytes())
    jpeg = "image/jpeg"
    return [
        {"name": "Au_ani_00003.jpg", "mimeType": jpeg, "buffer": authentic},
        {"name": "edited.jpg", "mimeType": jpeg, "buffer": _jpeg(pixels)},
        {"name": TAMPERED, "mimeType": jpeg, "buffer": data_file("casia2_samples", f"tampered/{TAMPERED}").read_bytes()},
        {"name": "notes.jpg", "mimeType": jpeg, "buffer": b"shopping list: not a picture\n"},
        {"name": "broken.jpg", "mimeType": jpeg, "buffer": authentic[:3000]},
        {"name": "more.zip", "mimeType": "application/zip", "buffer": archive.getvalue()},
    ]


def _row(page: Any, name: str) -> Any:
    return page.locator("tr", has=page.get_by_text(name, exact=True))


def _upload(page: Any, base: str, label: str, files: list[dict[str, Any]] | Path, how: str = "choose") -> None:
    """A new case from ``files`` (payloads, or a folder): chosen, chosen as a folder, or dropped on the page."""
    page.goto(f"{base}/cases/new")
    page.get_by_label("Label").fill(label)
    if how == "drop":
        payloads = [{"name": f["name"], "type": f["mimeType"], "data": base64.b64encode(f["buffer"]).decode()} for f in files]  # type: ignore[index,union-attr]
        dropped = page.evaluate_handle(
            """(files) => {
                const transfer = new DataTransfer();
                for (const f of files) transfer.items.add(new File([Uint8Array.from(atob(f.data), c => c.charCodeAt(0))], f.name, {type: f.type}));
                return transfer;
            }""",
            payloads,
        )
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    else:
        page.set_input_files("#folder" if how == "folder" else "#files", files)
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_selector("#done:not([hidden])", timeout=60_000)


def test_sign_in_upload_watch_inspect_compare_download_and_sign_out(desk: Desk) -> None:
    context = desk.browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    watched = Watched(context)
    page = watched.page

    page.goto(f"{desk.base}/cases/new")
    assert "/sign-in" in page.url
    screenshot(page, desk.shots, "sign_in")
    page.get_by_label("API key").fill("fsk_not_a_key_of_anyone_0000000000")
    page.get_by_role("button", name="Sign in").click()
    assert "unknown or has been revoked" in page.get_by_role("alert").inner_text()
    page.get_by_label("API key").fill(desk.key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{desk.base}/cases/new")  # back where the visitor was going
    session = next(c for c in context.cookies() if c["name"] == "forensics_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and desk.key not in session["value"]

    # a batch: the file that is no picture is refused at once, with its reason, the rest uploaded to S3 directly
    _upload(page, desk.base, "Wire photos 7 December", _batch())
    assert "Not a picture the service reads" in _row(page, "notes.jpg").inner_text()
    assert "Accepted" in _row(page, "more.zip/inside/029_F.png").inner_text()
    assert page.locator("#done-text").inner_text().startswith("Case created: 5 pictures accepted, 1 refused")
    screenshot(page, desk.shots, "new_case")

    # the case page follows the analysis live until every image is done
    page.get_by_role("link", name="Open the case").click()
    page.wait_for_selector('.case-status[data-running="0"]', timeout=CASE_TIMEOUT_MS)
    assert "6 of 6 done" in page.locator(".case-status").inner_text()
    assert "damaged or cut short" in _row(page, "broken.jpg").inner_text()
    assert "Not a picture" in _row(page, "notes.jpg").inner_text()
    assert page.locator("td.thumb img").count() == 4  # the four decoded pictures, as thumbnails
    page.wait_for_function("() => [...document.querySelectorAll('td.thumb img')].every(i => i.complete && i.naturalWidth > 0)")
    page.select_option("#show", "failed")
    assert page.locator("tbody tr:visible").count() == 2
    page.select_option("#show", "all")
    page.select_option("#sort", "score")
    scores = [float(s) for s in page.eval_on_selector_all("tbody tr", "rows => rows.map(r => r.dataset.score)")]
    assert scores == sorted(scores, reverse=True)
    screenshot(page, desk.shots, "case")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download report.zip").click()
    with zipfile.ZipFile(download.value.path()) as dossier:
        summary = json.loads(dossier.read("batch_summary.json"))
    assert summary["label"] == "Wire photos 7 December" and len(summary["images"]) == 6

    # the image page: the picture with a map over it, which the controls change pixel by pixel
    page.get_by_role("link", name=TAMPERED).click()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#map option").count() == 4  # fused and the three methods with maps
    next_frame(page, lambda: page.select_option("#map", "noise"))
    page.locator("#viewer").scroll_into_view_if_needed()
    screenshot(page, desk.shots, "image")
    shown = canvas_checksum(page)
    next_frame(page, lambda: (page.focus("#threshold"), page.keyboard.press("End")))  # threshold 0 -> 100: only the most suspicious pixels
    assert page.input_value("#threshold") == "100"
    raised = canvas_checksum(page)
    assert raised != shown
    next_frame(page, lambda: page.keyboard.press("PageDown"))  # 90
    lowered = canvas_checksum(page)
    assert lowered not in (shown, raised)
    next_frame(page, lambda: page.get_by_label("Invert mask").check())
    inverted = canvas_checksum(page)
    assert inverted not in (shown, raised, lowered)
    next_frame(page, lambda: page.get_by_label("Overlay").uncheck())
    bare = canvas_checksum(page)
    assert bare not in (shown, inverted, lowered)
    next_frame(page, lambda: page.get_by_label("Side by side").check())
    assert page.locator("#side").is_visible() and canvas_checksum(page, "#side") != 0
    next_frame(page, lambda: page.get_by_role("button", name="Zoom in").click())
    assert page.locator("#zoom-value").inner_text() == "150%"
    facts = page.locator("section", has=page.get_by_role("heading", name="Metadata")).inner_text()
    assert "SHA-256" in facts and "MD5" in facts
    assert "tamper score" in page.locator(".verdict-card").inner_text()
    assert page.locator("table.findings tbody tr").count() == 4
    display = page.request.get(f"{desk.base}{page.get_attribute('#viewer', 'data-display-url')}")
    assert display.headers["content-type"] == "image/jpeg" and len(display.body()) < 2_000_000

    # compare: the photo against its edited copy
    page.goto(f"{desk.base}/")
    page.get_by_role("link", name="Wire photos 7 December").click()
    page.get_by_role("link", name="Au_ani_00003.jpg").click()
    page.select_option("#compare-with", label="edited.jpg")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_selector("h1:has-text('Compare two pictures')")
    verdict = page.locator("#compare-verdict").inner_text()
    assert "The same picture, not the same pixels" in verdict, verdict
    ssim = float(page.locator("tr", has=page.get_by_text("SSIM", exact=True)).locator("td").inner_text())
    assert 0.5 < ssim < 1.0
    assert page.evaluate("document.querySelector('.compare-grid img[alt^=\"Difference\"]').naturalWidth") > 0
    screenshot(page, desk.shots, "compare")

    # the cases list: search by label, counts over 50 and failed
    page.goto(f"{desk.base}/?q=wire")
    row = _row(page, "Wire photos 7 December")
    cells = row.locator("td").all_inner_texts()
    assert cells[2] == "Done" and cells[5] == "2"
    screenshot(page, desk.shots, "cases")
    page.goto(f"{desk.base}/?q=no+such+label")
    assert "No case has a label containing" in page.locator("main").inner_text()

    # signing out ends the session, not the key
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in$"))
    cookie = {"forensics_session": session["value"]}
    assert httpx.get(f"{desk.base}/v1/cases", cookies=cookie).status_code == 401
    assert httpx.get(f"{desk.base}/v1/cases", headers=bearer(desk.key)).status_code == 200
    page.goto(f"{desk.base}/")
    assert "/sign-in" in page.url
    assert watched.errors == [] and watched.dialogs == []
    context.close()


def test_markup_in_names_and_metadata_is_shown_as_text_and_never_runs(desk: Desk) -> None:
    pixels = np.asarray(Image.open(data_file("casia2_samples", "authentic/Au_ani_00003.jpg")).convert("RGB"))
    exif = Image.Exif()
    exif[0x010F] = MARKUP_EXIF  # Make
    exif[0x0110] = MARKUP_XMP  # Model
    exif[0x0131] = "<svg onload=window.__xss=4>"  # Software
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="&lt;img src=x onerror=window.__xss=5&gt;"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    poisoned = _jpeg(pixels, exif=exif.tobytes(), xmp=xmp)
    context = desk.browser.new_context(viewport=VIEWPORT)
    watched = Watched(context)
    page = watched.page
    sign_in(page, desk.base, desk.key)
    label = "<script>window.__xss=6</script>"
    _upload(page, desk.base, label, [{"name": MARKUP_NAME, "mimeType": "image/jpeg", "buffer": poisoned}], how="drop")
    assert _row(page, MARKUP_NAME).count() == 1  # shown literally in the upload list
    page.get_by_role("link", name="Open the case").click()
    page.wait_for_selector('.case-status[data-running="0"]', timeout=CASE_TIMEOUT_MS)
    assert page.get_by_role("heading", name=label).count() == 1
    page.get_by_role("link", name=MARKUP_NAME).click()
    page.wait_for_selector("body[data-ready='1']")
    facts = page.locator("section", has=page.get_by_role("heading", name="Metadata")).inner_text()
    for text in (MARKUP_EXIF, MARKUP_XMP, "<svg onload=window.__xss=4>", "<img src=x onerror=window.__xss=5>"):
        assert text in facts, text
    assert page.get_by_role("heading", name=MARKUP_NAME).count() == 1
    page.goto(f"{desk.base}/")
    assert page.get_by_role("link", name=label).count() == 1
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src='x'], svg").count() == 0
    assert watched.dialogs == [] and watched.errors == []
    context.close()


def test_another_tenants_ids_give_404_pages(desk: Desk) -> None:
    theirs = httpx.post(f"{desk.base}/v1/cases", headers=bearer(desk.other_key),
                        files=[("images", ("theirs.jpg", data_file("casia2_samples", "authentic/Au_ani_00003.jpg").read_bytes(), "image/jpeg"))])
    assert theirs.status_code == 202, theirs.text
    case = theirs.json()
    image = case["images"][0]["id"]
    context = desk.browser.new_context(viewport=VIEWPORT)
    page = Watched(context).page
    sign_in(page, desk.base, desk.key)
    for path in (f"/cases/{case['id']}", f"/cases/{case['id']}/rows", f"/cases/{case['id']}/images/{image}",
                 f"/cases/{case['id']}/images/{image}/thumbnail.jpg", f"/compare?a={case['id']}/{image}&b={case['id']}/{image}",
                 "/cases/not-a-case-id"):
        response = page.goto(f"{desk.base}{path}")
        assert response.status == 404, path
        assert "There is nothing here" in page.locator("main").inner_text()
    assert page.request.get(f"{desk.base}/v1/cases/{case['id']}").status == 404  # the JSON API, with the session
    assert "theirs.jpg" not in page.goto(f"{desk.base}/").text()
    # a state-changing call with the session needs the page's CSRF token
    refused = page.request.post(f"{desk.base}/v1/uploads", data={"files": [{"filename": "a.jpg", "size": 10}]})
    assert refused.status == 403 and refused.json()["code"] == "CSRF_MISMATCH"
    context.close()


def test_embedded_mode_serves_the_page_with_uploads_through_the_api(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORENSICS_", "DATABASE_URL", "BROKER_URL", "STORAGE_URL", "S3_"))}
    env |= {"FORENSICS_HOME": str(tmp_path / "home"), "FORENSICS_API_KEY": (key := "fsk_embedded_web_key_0123456789abcdef"),
            "FORENSICS_METHODS": "metadata,ela"}
    folder = tmp_path / "desk" / "wire"
    folder.mkdir(parents=True)
    (folder / "photo.jpg").write_bytes(data_file("casia2_samples", "authentic/Au_ani_00003.jpg").read_bytes())
    with (tmp_path / "serve.log").open("wb") as out:
        server = subprocess.Popen([sys.executable, "-c", f"from api.embedded import serve; serve('127.0.0.1', {port})"],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _status(f"{base}/health"), lambda s: s == 200, 60, "healthy API")
        context = browser.new_context(viewport=VIEWPORT)
        watched = Watched(context)
        page = watched.page
        sign_in(page, base, key)
        _upload(page, base, "embedded", folder, how="folder")
        assert page.locator("#file-list").get_by_text("wire/photo.jpg").count() == 1
        page.get_by_role("link", name="Open the case").click()
        page.wait_for_selector('.case-status[data-running="0"]', timeout=CASE_TIMEOUT_MS)
        page.get_by_role("link", name="photo.jpg").click()
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#map option").count() == 2  # fused and ela
        assert watched.errors == []
        context.close()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=40)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
