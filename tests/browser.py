"""A headless Chromium for the page tests and the docs' screenshots: the system's Debian ``chromium`` driven by
the ``playwright`` package (never ``playwright install``: nothing is downloaded).

``chromium_or_reason()`` says whether both are here; ``open_browser()`` launches it with the flags a closed
network needs (no background connections, no component updates); ``inspect_page()`` loads one page and
returns what went wrong on it (console errors, page errors, failed or outside requests, duplicate ids), the
bounding box of every element the page must show, whether a narrow window scrolls sideways, and a full-page
screenshot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What each page must show, as CSS selectors: every match needs a non-empty bounding box once scrolled to.
INDEX_PARTS = {
    "leaderboard": "table.leaderboard",
    "plot": "figure.plot svg",
    "thumbnail": ".thumb img",
}
REPORT_PARTS = {"table": "table.attacks", "plot": "figure.plot svg", "notes": "ul.notes li"}


def chromium_path() -> str | None:
    """The system Chromium (RLLAB_CHROMIUM, else Debian's ``chromium``), or None."""
    for candidate in (os.environ.get("RLLAB_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def chromium_or_reason() -> tuple[str | None, str]:
    """(the Chromium to drive, "") when the page tests can run, else (None, why not)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "the playwright package is not installed (pip install -e '.[dev]')"
    path = chromium_path()
    if path is None:
        return None, "no system Chromium at /usr/bin/chromium (apt-get install chromium; scripts/setup.sh does)"
    return path, ""


@contextmanager
def open_browser(executable: str | None = None) -> Iterator[Any]:
    """A headless system Chromium (a playwright ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageCheck:
    """What one page load showed."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)  # anything but the page, data: URIs and its own server
    boxes: dict[str, list[dict[str, float] | None]] = field(default_factory=dict)  # part -> box of each match
    links: list[str] = field(default_factory=list)  # the href of every link, resolved against the page
    image_links: list[str] = field(default_factory=list)  # the href of every link around an image
    ids: set[str] = field(default_factory=set)  # every element id (the targets of #links)
    duplicate_ids: list[str] = field(default_factory=list)  # ids used twice (inline SVGs must not share any)
    scroll_width: int = 0
    client_width: int = 0
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        """Everything that went wrong loading the page, one line each."""
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed_requests]
            + [f"request outside the page: {m}" for m in self.outside_requests]
            + [f"duplicate id: {i}" for i in self.duplicate_ids]
        )

    def broken_links(self) -> list[str]:
        """Links of a ``file:`` page that lead nowhere: a file that does not exist, an ``#id`` the page lacks, or
        anywhere off this machine (an offline page links only to its own files)."""
        out = []
        for href in self.links:
            base, _, fragment = href.partition("#")
            if base == self.url.partition("#")[0]:
                ok = not fragment or unquote(fragment) in self.ids
            else:
                ok = base.startswith("file:") and Path(url2pathname(urlparse(base).path)).exists()
            out += [] if ok else [href]
        return out

    def invisible(self) -> list[str]:
        """Each required element with no bounding box or an empty one, as ``part #i``; a part with no match at
        all is ``part: none on the page``."""
        out = []
        for part, boxes in self.boxes.items():
            if not boxes:
                out.append(f"{part}: none on the page")
            out += [f"{part} #{i}" for i, b in enumerate(boxes) if not b or b["width"] < 1 or b["height"] < 1]
        return out


def inspect_page(
    browser: Any,
    url: str,
    parts: dict[str, str],
    width: int = 1280,
    height: int = 900,
    screenshot: Path | None = None,
    max_height: int | None = None,
) -> PageCheck:
    """Load ``url`` in a fresh ``width`` x ``height`` window and check it (see ``PageCheck``); with
    ``screenshot``, save a full-page PNG there (cut at ``max_height`` CSS pixels when given)."""
    check = PageCheck(url)
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = context.new_page()
    own = url.split("/", 3)[:3] if url.startswith("http") else None  # a local server may serve more files

    def on_request(request: Any) -> None:
        u = request.url
        if u == url or u.startswith(("data:", "about:")) or (own is not None and u.split("/", 3)[:3] == own):
            return
        check.outside_requests.append(u)

    page.on("console", lambda m: m.type == "error" and check.console_errors.append(m.text))
    page.on("pageerror", lambda e: check.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: check.failed_requests.append(f"{r.url} ({r.failure})"))
    page.on("request", on_request)
    try:
        page.goto(url, wait_until="load")
        for part, selector in parts.items():
            boxes = []
            for element in page.locator(selector).all():
                element.evaluate("e => e.scrollIntoView({block: 'center'})")  # no wait: a hidden one stays hidden
                boxes.append(element.bounding_box())
            check.boxes[part] = boxes
        page.evaluate("window.scrollTo(0, 0)")
        check.links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        check.image_links = page.eval_on_selector_all("a[href] img", "els => els.map(e => e.closest('a').href)")
        ids = page.eval_on_selector_all("[id]", "els => els.map(e => e.id)")
        check.ids = set(ids)
        check.duplicate_ids = sorted({i for i in ids if ids.count(i) > 1})
        check.scroll_width = page.evaluate("document.documentElement.scrollWidth")
        check.client_width = page.evaluate("document.documentElement.clientWidth")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            full = page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": width, "height": min(full, max_height or full)}
            page.screenshot(path=str(screenshot), full_page=True, clip=clip)
            check.screenshot = screenshot
    finally:
        context.close()
    return check
