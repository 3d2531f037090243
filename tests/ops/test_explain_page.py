"""The "Why is this blocked?" form of the operations endpoint, in a real headless browser, and
``/api/explain`` with the same JSON as ``threatshare explain --json``
(docs/design.md#provenance-and-audit)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

from tests.ops.served import served
from tests.ops.test_page import chromium, pytestmark  # noqa: F401 - skipped without chromium


class ExplainDom(HTMLParser):
    """What the browser's DOM of the explain page holds."""

    def __init__(self) -> None:
        super().__init__()
        self.matches: list[str] = []
        self.verdict = ""
        self.scripts = 0
        self.forms: list[str] = []
        self._in_verdict = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "form":
            self.forms.append(str(a.get("action")))
        if "match" in (a.get("class") or "").split():
            self.matches.append(str(a.get("data-entry")))
        self._in_verdict = a.get("id") == "verdict"

    def handle_data(self, data: str) -> None:
        if self._in_verdict:
            self.verdict += data

    def handle_endtag(self, tag: str) -> None:
        self._in_verdict = False


def dom(tmp_path: Path, url: str) -> ExplainDom:
    done = chromium(tmp_path, url, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = ExplainDom()
    parsed.feed(done.stdout)
    return parsed


def test_the_form_explains_a_blocked_url_and_escapes_what_it_is_given(tmp_path: Path) -> None:
    """The status page carries the form; its answer names the entry that blocks a deeper URL;
    hostile input is shown as text, never run; the JSON answer matches the page."""
    with served(tmp_path) as s:
        home = dom(tmp_path, s.base + "/")
        target = "https://evil.example.com/login/step2?x=1"
        page = dom(tmp_path, s.base + "/explain?url=" + quote(target, safe=""))
        hostile = dom(tmp_path, s.base + "/explain?url=" + quote("<script>alert(1)</script>"))
        clear = dom(tmp_path, s.base + "/explain?url=" + quote("https://unrelated.example/"))
        api = s.get("/api/explain?url=" + quote(target, safe=""))
        empty = s.get("/api/explain")
        shot = tmp_path / "explain.png"
        done = chromium(
            tmp_path,
            s.base + "/explain?url=" + quote(target, safe=""),
            f"--screenshot={shot}",
            "--window-size=390,844",
        )
    assert "/explain" in home.forms
    assert "evil.example.com/login" in page.matches
    assert "is blocked" in page.verdict
    assert hostile.scripts == 0 and hostile.matches == []
    assert clear.matches == [] and "not blocked" in clear.verdict
    assert api.status_code == 200
    body = api.json()
    assert set(body) == {"input", "entry_form", "matches", "rules"}
    assert {m["entry"] for m in body["matches"]} == set(page.matches)
    assert all(m["unblock"].startswith("threatshare unblock ") for m in body["matches"])
    assert empty.status_code == 400
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
