"""The status page in a real headless browser (Debian's chromium): instances, their states and
the quota bars are rendered; with Redis stopped a banner says so; on a phone and on a desktop
the halted instance's error and what to do are on the first screen, nothing scrolls sideways."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.ops.browser import HEADLESS, Browser
from tests.ops.served import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Skipped on a machine without chromium, never in CI: .ci/run installs it, and a CI run without
# it fails here instead of passing with the page untested.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install chromium; CI does)",
)


def chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless chromium run on ``url``, with a profile of its own and no network chatter."""
    profile = tmp_path / "chromium-profile"
    assert CHROMIUM is not None, "chromium is not installed: .ci/run installs it"
    return subprocess.run(
        [
            CHROMIUM,
            *HEADLESS,
            f"--user-data-dir={profile}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Rendered(HTMLParser):
    """What the browser's DOM holds: instance rows, quota bars, the Redis banner."""

    def __init__(self) -> None:
        super().__init__()
        self.instances: dict[str, str] = {}
        self.bars: dict[str, float] = {}
        self.fills: list[str] = []
        self.banner = False
        self._tenant: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "instance" in classes:
            self.instances[str(a["data-instance"])] = str(a["data-state"])
        if "tenant" in classes:
            self._tenant = a.get("data-tenant")
        if "bar" in classes and self._tenant:
            self.bars[self._tenant] = float(str(a["data-used-percent"]))
        if "used" in classes:
            self.fills.append(str(a.get("style")))
        if a.get("id") == "redis-down":
            self.banner = True


def rendered(tmp_path: Path, url: str) -> Rendered:
    done = chromium(tmp_path, url, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = Rendered()
    parsed.feed(done.stdout)
    return parsed


def test_page_renders_instances_states_and_quota_bars(tmp_path: Path) -> None:
    """The browser shows one row per instance with its state, a quota bar per tenant whose
    fill matches the quota status reports; a screenshot is written; with Redis stopped the
    page still loads and shows the banner."""
    with served(tmp_path) as s:
        document = s.status_json()
        page = rendered(tmp_path, s.base + "/")
        screenshot = tmp_path / "page.png"
        shot = chromium(
            tmp_path, s.base + "/", f"--screenshot={screenshot}", "--window-size=1280,900"
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
        s.redis.stop()
        down = rendered(tmp_path, s.base + "/")
    assert page.instances == {r["name"]: r["state"] for r in document["instances"]}
    assert set(page.instances.values()) == {"ok", "halted"}
    assert not page.banner
    assert set(page.bars) == {"prod", "lab"}
    prod = next(r["quota"] for r in document["instances"] if r["zia"] == "prod")
    expected = round(100.0 * prod["used"] / (prod["used"] + prod["remaining"]), 1)
    assert page.bars["prod"] == expected > 0
    assert f"width: {expected}%" in " ".join(page.fills)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000
    assert down.banner
    assert down.instances == {}


GEOMETRY = """(() => {
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
            text: e.textContent.replace(/\\s+/g, ' ').trim()};
  };
  const halted = 'tr.instance[data-state="halted"] ';
  const all = (selector) => [...document.querySelectorAll(selector)].map(box);
  return {
    scrollWidth: document.documentElement.scrollWidth,
    names: all(halted + 'td.name strong'),
    states: all(halted + '.state'),
    errors: all(halted + '.error-text'),
    remedies: all(halted + '.remedy'),
  };
})()"""


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize(("width", "height", "mobile"), [(390, 844, True), (1280, 900, False)])
def test_the_halted_instance_error_and_remedy_are_in_the_viewport(
    tmp_path: Path, width: int, height: int, mobile: bool
) -> None:
    """On a phone (390 px) and a desktop (1280 px) the page never scrolls sideways, and the
    halted instance's name, state, error text and what to do lie inside the first screen; a
    screenshot of that screen is taken."""
    with served(tmp_path) as s:
        document = s.status_json()
        assert CHROMIUM is not None
        with Browser(CHROMIUM, tmp_path / "devtools-profile") as browser:
            browser.open(s.base + "/", width, height, mobile=mobile)
            geometry = browser.evaluate(GEOMETRY)
            screenshot = tmp_path / f"page-{width}.png"
            browser.screenshot(screenshot)
    [halted] = [r for r in document["instances"] if r["state"] == "halted"]
    assert geometry["scrollWidth"] <= width
    [name], [state], [error], [remedy] = (
        geometry[k] for k in ("names", "states", "errors", "remedies")
    )
    assert name["text"] == halted["name"] and state["text"] == "halted"
    assert error["text"].startswith(halted["last_error"]["code"])
    assert halted["last_error"]["message"][:40] in error["text"]
    assert remedy["text"].startswith("What to do:") and len(remedy["text"]) > 20
    for box in (name, state, error, remedy):
        assert 0 <= box["left"] < box["right"] <= width, (box, width)
        assert 0 <= box["top"] < box["bottom"] <= height, (box, height)
    assert _png_size(screenshot) == (width, height)
    assert screenshot.stat().st_size > 10_000
