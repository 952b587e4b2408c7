"""The web page in a real browser: Debian's Chromium driven by Playwright (no browser download).

``scripts/test`` installs Chromium when ``/usr/bin/chromium`` is missing; the tests skip with
that message where it cannot be installed. Screenshots go to ``$FORENSICS_SCREENSHOTS`` when it
is set (``FORENSICS_SCREENSHOTS=docs/screenshots scripts/test tests/test_web.py`` refreshes the
README's), else to the test's temporary folder.
"""

import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

CHROMIUM = Path(os.environ.get("FORENSICS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1280, "height": 860}


def launch(playwright: Any) -> Any:
    """A headless Chromium, or skip the test when there is none."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM))


class Watched:
    """A page whose dialogs, script errors and console errors are recorded: an executed script,
    a script error or a script the Content-Security-Policy refused shows up in one of them.
    Chromium's notes of HTTP error statuses ("Failed to load resource") are left out: the tests
    assert statuses themselves, and a 401 or 404 page is expected where they ask for one."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


def sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/")
    assert "/sign-in" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def canvas_checksum(page: Any, selector: str = "#view") -> int:
    """A checksum of what the canvas shows, read back from its pixels."""
    return int(page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let sum = 0;
            for (let i = 0; i < pixels.length; i += 7) sum = (sum * 31 + pixels[i]) % 2147483647;
            return sum;
        }""",
        selector,
    ))


def next_frame(page: Any, action: Any) -> None:
    """Run ``action`` and wait until the viewer has drawn a new frame."""
    before = page.evaluate("() => document.querySelector('#view').dataset.frame")
    action()
    page.wait_for_function("(before) => document.querySelector('#view').dataset.frame !== before", arg=before)


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """A PNG of the viewport, reduced to 128 colours so the committed copies stay small."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    picture = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def screenshot_folder(tmp: Path) -> Path:
    configured = os.environ.get("FORENSICS_SCREENSHOTS")
    return Path(configured) if configured else tmp / "screenshots"
