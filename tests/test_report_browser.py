"""The report page in a real headless Chromium: the script ran without error, the browser painted each
step in its score's colour, the marks sit on the right steps, a URL hash presets the controls, and the
hostile step text stayed text.

Chromium comes from Debian's package (`make test` installs it when missing). Without it the tests skip
on a workstation and FAIL under CI=true: a missing browser must not pass as a green run.
"""

from __future__ import annotations

import re

import pytest
from report_pages import dom, page, render

from verifier_service.report import score_rgb

def rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(x) for x in re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", css).groups())


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page(), encoding="utf-8")
    return path


def test_browser_runs_the_page(page_file):
    text, console = render(page_file)
    d = dom(text)
    body = next(a for t, a in d.tags if t == "body")
    assert body["data-js"] == "ok" and "data-pwned" not in body
    assert d.text["js-errors"] == "" and console == ""
    assert d.text["shown"] == "showing 5 of 5 chains"
    assert d.text["hits"] == "first error found exactly in 2 of 4 labelled, scored chains"  # a1 and a2
    steps = [a for t, a in d.tags if t == "li"]
    painted = [(float(a["data-score"]), rgb(a["data-computed-bg"])) for a in steps if "data-score" in a]
    assert len(painted) == 11
    for score, colour in painted:
        assert all(abs(x - y) <= 1 for x, y in zip(colour, score_rgb(score))), (score, colour)
    marks = [(a["data-step"], a["class"]) for a in steps]
    assert [m for m in marks if "pred" in m[1] or "gold" in m[1]] == [
        ("1", "step pred gold"), ("0", "step gold"), ("2", "step pred"), ("1", "step pred"), ("0", "step gold")]
    assert [a["id"] for t, a in d.tags if t == "svg"] == ["plot-curves", "plot-scores", "plot-threshold"]


def test_hash_sets_threshold_and_filter(page_file):
    # at threshold 0.65 the first errors move: a3's to step 0 (0.6 < 0.65); b1 keeps step 1 (0.4)
    text, console = render(page_file, "#threshold=0.65&filter=mismatch")
    d = dom(text)
    assert d.text["js-errors"] == "" and console == ""
    chains = {a["data-id"]: a["class"] for t, a in d.tags if t == "div" and a.get("data-id")}
    # predictions now: a1 -1, a2 1, a3 0, b1 1 (labelled -1: the one mismatch); u1 was not scored
    assert chains == {"a1": "chain hidden", "a2": "chain hidden", "a3": "chain hidden", "b1": "chain",
                      "u1": "chain hidden"}
    assert d.text["shown"] == "showing 1 of 5 chains"
    assert d.text["hits"] == "first error found exactly in 3 of 4 labelled, scored chains"
    a3 = [a["class"] for t, a in d.tags if t == "li"][6:9]
    assert a3 == ["step gold pred", "step", "step"]  # the script moved the PRM's mark to step 0
    assert re.findall(r'class="pred-text">([^<]*)<', text) == ["-1", "1", "0", "1", "n/a"]  # headers follow
