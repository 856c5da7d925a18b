"""The report page as a document: self-contained, escaped, the marks and colours where they belong.
(tests/test_report_browser.py checks that a real browser renders it.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from report_pages import HOSTILE, page

from verifier_service.chain_metrics import ChainRecord, summarize
from verifier_service.report import MAX_CHAINS, ChainView, render_report, score_rgb


class Elements(HTMLParser):
    """Every start tag as (tag, attrs)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def elements(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = Elements()
    parser.feed(text)
    return parser.tags


def test_page_is_self_contained():
    text = page()
    tags = elements(text)
    # nothing to fetch: no src/href at all, no stylesheet link, no @import or url() in the CSS
    assert not [a for _, a in tags if "src" in a or "href" in a]
    assert not [t for t, _ in tags if t in ("link", "iframe", "img", "object", "embed")]
    assert "@import" not in text and "url(" not in text
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"] * 3  # SVG namespace only


def test_hostile_text_is_escaped():
    text = page()
    assert HOSTILE not in text and "&lt;img src=x onerror=" in text and "&lt;pens&gt;" in text
    assert sum(1 for t, a in elements(text) if t == "script" and not a) == 1  # only the page's own script


def test_steps_carry_scores_colours_and_marks():
    steps = [(a["data-step"], a) for t, a in elements(page()) if t == "li"]
    chains = [a for t, a in elements(page()) if t == "div" and "chain" in a.get("class", "").split()]
    assert [c["data-id"] for c in chains] == ["a1", "a2", "a3", "b1", "u1"]
    assert [(c["data-pred"], c["data-label"], c["data-answer"]) for c in chains] == [
        ("-1", "-1", "right"), ("1", "1", "wrong"), ("2", "0", "wrong"), ("1", "-1", "right"), ("", "0", "")]
    classes = [a["class"] for _, a in steps]
    assert classes == ["step"] * 3 + ["step", "step pred gold", "step"] + ["step gold", "step", "step pred"] + \
        ["step", "step pred"] + ["step gold"]
    a2_bad = steps[4][1]
    assert a2_bad["data-score"] == "0.200000" and "hsl(24.0, 70%, 80%)" in a2_bad["style"]
    assert "data-score" not in steps[-1][1] and "style" not in steps[-1][1]  # not scored: no colour


def test_score_rgb_ends():
    red, green = score_rgb(0.0), score_rgb(1.0)
    assert red[0] > 200 and red[1] < 180 and green[1] > 200 and green[0] < 180
    assert score_rgb(-1.0) == red and score_rgb(2.0) == green


def test_summary_and_plots_present():
    text = page()
    assert '<table id="metrics">' in text and '<table id="curves">' in text
    svgs = [a["id"] for t, a in elements(text) if t == "svg"]
    assert svgs == ["plot-curves", "plot-scores", "plot-threshold"]
    series = [a["data-series"] for t, a in elements(text) if t == "polyline"]
    assert series == ["majority vote", "PRM best-of-N", "weighted best-of-N", "pass@N", "F1"]


def test_long_runs_show_the_first_chains_only():
    records = [ChainRecord(str(i), (0.5,), 0.5, -1, -1) for i in range(MAX_CHAINS + 3)]
    views = [ChainView(r, "p", ("s",), "OK") for r in records]
    text = render_report(summarize(records), records, views)
    assert f"Chains (the first {MAX_CHAINS} of {MAX_CHAINS + 3})" in text
    assert text.count('class="chain"') == MAX_CHAINS
    assert '<td class="metric">503</td>' in text  # the metrics still count them all


def test_no_plots_without_groups_or_labels():
    records = [ChainRecord("x", (0.5,), 0.5, -1)]
    text = render_report(summarize(records), records, [ChainView(records[0], "p", ("s",), "OK")])
    assert "no plot: no groups and no labels" in text and "<svg" not in text
