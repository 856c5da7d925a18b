"""A hand-scored report page, and headless Chromium to load pages: for tests/test_report*.py and
tests/test_eval_steps.py. Without Chromium a test skips on a workstation and fails under CI (ci_rules.py)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from verifier_service.chain_metrics import ChainRecord, summarize
from verifier_service.report import ChainView, render_report

from ci_rules import unavailable

HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1"></ol><script>document.body.dataset.pwned=2</script>'

RECORDS = [
    ChainRecord("a1", (0.9, 0.8, 0.7), 0.7, -1, -1, "a", True, "5"),
    ChainRecord("a2", (0.9, 0.2, 0.1), 0.1, 1, 1, "a", False, "7"),
    ChainRecord("a3", (0.6, 0.55, 0.3), 0.3, 2, 0, "a", False, "7"),   # predicted 2, labelled 0
    ChainRecord("b1", (0.95, 0.4), 0.4, 1, -1, "b", True, "3"),        # a correct chain flagged at step 1
    ChainRecord("u1", (), None, None, 0, None, None, None),            # the PRM did not score it
]
STEPS = {"a1": ("12 + 7 = 19", "19 - 5 = 14", "#### 14"), "a2": ("12 + 7 = 19", "19 - 5 = 13", "#### 13"),
         "a3": ("12 + 7 = 18", "18 - 5 = 13", HOSTILE), "b1": ("3 * 1 = 3", "#### 3"), "u1": ("1 + 1 = 3",)}


def page() -> str:
    views = [ChainView(r, "Ann has 12 apples & <pens>.", STEPS[r.id], "OK" if r.aggregate is not None else
                       "UNAVAILABLE", "" if r.aggregate is not None else "no PRM", r.answer) for r in RECORDS]
    return render_report(summarize(RECORDS), RECORDS, views, source="hand-made scores")


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        message = f"no headless browser ({', '.join(BROWSERS)}): apt-get install -y --no-install-recommends chromium"
        unavailable(message)
    return found


def render(path: Path, fragment: str = "") -> tuple[str, str]:
    """(the DOM after the page's scripts ran, the browser's console log lines)."""
    done = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={path.parent / 'profile'}", "--dump-dom", path.as_uri() + fragment],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, "\n".join(line for line in done.stderr.splitlines() if ":CONSOLE" in line)


class Dom(HTMLParser):
    """Start tags with attributes, and the text inside elements that have an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag not in ("br", "img", "input", "meta", "line", "rect", "circle", "polyline"):
            self._open.append(attrs.get("id"))
            if attrs.get("id"):
                self.text[attrs["id"]] = ""

    def handle_endtag(self, tag):
        if self._open and tag not in ("br", "img", "input", "meta", "line", "rect", "circle", "polyline"):
            self._open.pop()

    def handle_data(self, data):
        for name in self._open:
            if name:
                self.text[name] += data


def dom(text: str) -> Dom:
    parsed = Dom()
    parsed.feed(text)
    return parsed
