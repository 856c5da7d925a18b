"""The HTML report of `verirl eval --report FILE.html`: one self-contained page about scored chains.

What is on it: the summary metrics (chain_metrics.ChainSummary), three inline SVG plots (accuracy
against N for majority vote, PRM best-of-N, weighted best-of-N and pass@N; step scores of labelled
right steps vs labelled first errors; ProcessBench F1 against the first-error threshold) and the chains,
each step coloured by its PRM score (red 0 -> green 1) with the predicted and the labelled first error
marked. A small script filters the chains, recomputes the predicted first errors for another threshold
and reports any script error on the page itself (the browser test reads it).

Self-contained on purpose: no network, no external CSS/JS/fonts, so the file can be mailed or archived.
Plots are SVG written here, not matplotlib: the service's install has no plotting library.
"""

from __future__ import annotations

import colorsys
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .chain_metrics import ChainRecord, ChainSummary, f1_by_threshold, labelled_step_scores

__all__ = ["ChainView", "render_report", "write_report", "score_rgb", "MAX_CHAINS"]

MAX_CHAINS = 500  # chains drawn on the page; the metrics always cover every chain
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
DASHES = ("none", "7 3", "2 3", "9 3 2 3", "4 4")  # lines that coincide (often at N=1) stay told apart


@dataclass(frozen=True)
class ChainView:
    """What the page shows of one chain beyond its record: the text and the service's verdict."""

    record: ChainRecord
    problem: str
    steps: tuple[str, ...]
    status: str
    reason: str = ""
    extracted: str | None = None


def score_rgb(score: float) -> tuple[int, int, int]:
    """The background of a step of this score: hue 0 (red) at 0 to 120 (green) at 1, light enough to read.
    The script and the test use the same hsl(); this gives its rgb for checks."""
    r, g, b = colorsys.hls_to_rgb(_hue(score) / 360, 0.8, 0.7)
    return round(r * 255), round(g * 255), round(b * 255)


def _hue(score: float) -> float:
    return round(120 * min(1.0, max(0.0, score)), 1)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


# ------------------------------------------------------------------------------------------ plots

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 260, 46, 12, 26, 40


def _frame(title: str, x_label: str, y_label: str, plot_id: str) -> list[str]:
    """An SVG with its title, axes and y grid in [0, 1]."""
    parts = [f'<svg id="{plot_id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title)}">',
             f'<text x="{W / 2}" y="16" text-anchor="middle" class="title">{_e(title)}</text>']
    for i in range(6):
        y = _y(i / 5)
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y}" y2="{y}" class="grid"/>'
                     f'<text x="{PAD_L - 4}" y="{y + 4}" text-anchor="end">{i / 5:.1f}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle">{_e(x_label)}</text>'
                 f'<text x="12" y="{H / 2}" text-anchor="middle" transform="rotate(-90 12 {H / 2})">'
                 f'{_e(y_label)}</text>')
    return parts


def _y(v: float) -> float:
    return round(H - PAD_B - v * (H - PAD_B - PAD_T), 1)


def _xs(count: int) -> list[float]:
    """Evenly spaced x positions (N = 1, 2, 4, ... is already a log scale)."""
    span = W - PAD_L - PAD_R - 20
    return [round(PAD_L + 10 + (span * i / (count - 1) if count > 1 else span / 2), 1) for i in range(count)]


def _line_chart(plot_id: str, title: str, x_label: str, y_label: str, ticks: Sequence[object],
                series: dict[str, Sequence[float | None]]) -> str:
    parts = _frame(title, x_label, y_label, plot_id)
    xs = _xs(len(ticks))
    parts += [f'<text x="{x}" y="{H - PAD_B + 14}" text-anchor="middle">{_e(t)}</text>' for x, t in zip(xs, ticks)]
    for k, (name, ys) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = [(x, _y(y)) for x, y in zip(xs, ys) if y is not None]
        if len(points) > 1:
            line = " ".join(f"{x},{y}" for x, y in points)
            parts.append(f'<polyline class="series" data-series="{_e(name)}" fill="none" stroke="{colour}" '
                         f'stroke-width="2" stroke-dasharray="{DASHES[k % len(DASHES)]}" points="{line}"/>')
        parts += [f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>' for x, y in points]
        y = PAD_T + 9 + 14 * k  # the legend's sample line has the series' dashes
        parts.append(f'<line x1="{PAD_L + 6}" x2="{PAD_L + 24}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2" '
                     f'stroke-dasharray="{DASHES[k % len(DASHES)]}"/>'
                     f'<text x="{PAD_L + 28}" y="{y + 4}">{_e(name)}</text>')
    return "".join(parts) + "</svg>"


def _histogram(plot_id: str, title: str, series: dict[str, Sequence[float]], bins: int = 10) -> str:
    """Share of each series' values per score bin, bars side by side."""
    parts = _frame(title, "PRM step score", "share of steps", plot_id)
    span = (W - PAD_L - PAD_R) / bins
    for i in range(bins + 1):
        parts.append(f'<text x="{PAD_L + i * span:.1f}" y="{H - PAD_B + 14}" text-anchor="middle">'
                     f'{i / bins:.1f}</text>' if i % 2 == 0 else "")
    width = span / (len(series) + 1)
    for k, (name, values) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        counts = [0] * bins
        for v in values:
            counts[min(bins - 1, max(0, int(v * bins)))] += 1
        for i, c in enumerate(counts):
            share = c / len(values) if values else 0.0
            x = PAD_L + i * span + width * (k + 0.5)
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{_y(share)}" width="{width:.1f}" '
                         f'height="{round(_y(0) - _y(share), 1)}" fill="{colour}"/>')
        parts.append(f'<rect x="{PAD_L + 8}" y="{PAD_T + 4 + 14 * k}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{PAD_L + 22}" y="{PAD_T + 13 + 14 * k}">{_e(name)} ({len(values)})</text>')
    return "".join(parts) + "</svg>"


def _plots(summary: ChainSummary, records: Sequence[ChainRecord]) -> list[str]:
    out = []
    c = summary.curves
    if c is not None:
        out.append(_line_chart("plot-curves", "Accuracy against N", "N (responses per problem)", "accuracy",
                               c.sizes, {"majority vote": c.majority, "PRM best-of-N": c.best_of_n,
                                         "weighted best-of-N": c.weighted_best_of_n, "pass@N": c.pass_at_k}))
    good, bad = labelled_step_scores(records)
    if good or bad:
        out.append(_histogram("plot-scores", "Step scores by label",
                              {"steps labelled right": good, "labelled first errors": bad}))
    if summary.processbench is not None:
        f1 = f1_by_threshold(records, THRESHOLDS)
        out.append(_line_chart("plot-threshold", "ProcessBench F1 against threshold", "first-error threshold",
                               "F1", [t if i % 3 == 0 else "" for i, t in enumerate(THRESHOLDS)], {"F1": f1}))
    return out


# ------------------------------------------------------------------------------------------ page

def _summary_table(summary: ChainSummary) -> str:
    rows = [("chains", summary.chains), ("scored by the PRM", summary.judged), ("labelled", summary.labelled),
            ("final answers checked", summary.answers_checked),
            ("final answer accuracy", _num(summary.answer_accuracy))]
    pb = summary.processbench
    if pb is not None:
        rows += [("ProcessBench: accuracy on erroneous chains", f"{_num(pb.erroneous_accuracy)} ({pb.erroneous})"),
                 ("ProcessBench: accuracy on correct chains", f"{_num(pb.correct_accuracy)} ({pb.correct})"),
                 ("ProcessBench: F1", _num(pb.f1))]
    for reason, count in summary.grouped_out.items():
        rows.append((f"left out of the groups: {reason}", count))
    body = "".join(f'<tr><th>{_e(k)}</th><td class="metric">{_e(v)}</td></tr>' for k, v in rows)
    table = f'<table id="metrics">{body}</table>'
    c = summary.curves
    if c is not None:
        head = "<tr><th>N</th><th>groups</th><th>majority</th><th>best-of-N</th><th>weighted</th><th>pass@N</th></tr>"
        lines = "".join(f"<tr><td>{n}</td><td>{g}</td><td>{m:.4f}</td><td>{_num(b)}</td><td>{_num(w)}</td>"
                        f"<td>{p:.4f}</td></tr>" for n, g, m, b, w, p in
                        zip(c.sizes, c.groups, c.majority, c.best_of_n, c.weighted_best_of_n, c.pass_at_k))
        table += f'<table id="curves">{head}{lines}</table><p class="note">{_e(c.subsets)}</p>'
    return table


def _chain(view: ChainView) -> str:
    r = view.record
    pred = -1 if r.first_error is None else r.first_error  # for the step marks
    label = "" if r.label is None else str(r.label)
    answer = "" if r.correct is None else ("right" if r.correct else "wrong")
    head = [f"<b>{_e(r.id)}</b>", f"status {_e(view.status)}"]
    if r.group is not None:
        head.append(f"group {_e(r.group)}")
    if r.aggregate is not None:
        head.append(f"aggregate {r.aggregate:.3f}")
    head.append('predicted first error <span class="pred-text">'
                f"{r.first_error if r.first_error is not None else 'n/a'}</span>")
    if r.label is not None:
        head.append(f"labelled {r.label}")
    if answer:
        head.append(f"answer {_e(view.extracted or '')} ({answer})")
    if view.reason:
        head.append(_e(view.reason))
    steps = []
    for j, text in enumerate(view.steps):
        scored = j < len(r.step_scores)
        score = r.step_scores[j] if scored else None
        classes = ["step"] + (["pred"] if j == pred and r.first_error is not None else []) + \
            (["gold"] if r.label is not None and j == r.label else [])
        attrs = f' data-score="{score:.6f}" style="background-color: hsl({_hue(score)}, 70%, 80%)"' if scored else ""
        steps.append(f'<li class="{" ".join(classes)}" data-step="{j}"{attrs}>'
                     f'<span class="score">{_num(score, 3)}</span><span class="text">{_e(text)}</span>'
                     '<span class="mark pred-mark">PRM: first error</span>'
                     '<span class="mark gold-mark">label: first error</span></li>')
    judged = "" if r.first_error is None else str(r.first_error)  # "": the PRM did not score it
    return (f'<div class="chain" data-id="{_e(r.id)}" data-pred="{judged}" data-label="{label}" '
            f'data-answer="{answer}"><div class="head">{" · ".join(head)}</div>'
            f'<div class="problem">{_e(view.problem)}</div><ol start="0">{"".join(steps)}</ol></div>')


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 1em .5em 0;display:inline-table;vertical-align:top}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left} td{font-variant-numeric:tabular-nums}
.plot{border:1px solid #ddd;margin:0 8px 8px 0} .plot text{font-size:11px;fill:#333} .plot .title{font-size:13px}
.plot .grid{stroke:#eee} .note{color:#666;font-size:12px}
.chain{border:1px solid #ccc;border-radius:4px;margin:8px 0;padding:6px} .chain.hidden{display:none}
.head{font-size:12px;color:#444} .problem{margin:4px 0;font-style:italic}
ol{margin:0;padding-left:2.2em} .step{margin:2px 0;padding:2px 6px;border-left:4px solid transparent}
.step .score{display:inline-block;width:3.5em;font-family:monospace;color:#333}
.step .text{white-space:pre-wrap}
.mark{display:none;margin-left:8px;padding:0 4px;border-radius:3px;font-size:11px;color:#fff}
.pred{border-left-color:#a00} .pred .pred-mark{display:inline;background:#a00}
.gold{outline:2px dashed #0050c8} .gold .gold-mark{display:inline;background:#0050c8}
#js-errors{color:#a00;white-space:pre-wrap}
"""

# Filters and the threshold recompute the page in place; every error is written into #js-errors, and
# body[data-js] turns "ok" only when the script ran to its end (the browser test reads both).
_JS = """
window.onerror = function (msg, src, line) {
  document.getElementById('js-errors').textContent += msg + ' (line ' + line + ')\\n';
};
(function () {
  var chains = Array.prototype.slice.call(document.querySelectorAll('.chain'));
  var filter = document.getElementById('filter'), threshold = document.getElementById('threshold');
  function predicted(chain) {  // null: the PRM did not score this chain
    if (chain.dataset.pred === '') { return null; }
    var t = parseFloat(threshold.value);
    if (isNaN(t)) { return parseInt(chain.dataset.pred, 10); }
    var steps = chain.querySelectorAll('.step[data-score]');
    for (var i = 0; i < steps.length; i++) { if (parseFloat(steps[i].dataset.score) < t) { return i; } }
    return -1;
  }
  function keep(chain, pred) {
    var label = chain.dataset.label;
    switch (filter.value) {
      case 'erroneous': return label !== '' && label !== '-1';
      case 'mismatch': return label !== '' && pred !== null && parseInt(label, 10) !== pred;
      case 'wrong-answer': return chain.dataset.answer === 'wrong';
      default: return true;
    }
  }
  function update() {
    var shown = 0, hits = 0, labelled = 0;
    chains.forEach(function (chain) {
      var pred = predicted(chain);
      chain.querySelectorAll('.step').forEach(function (step, j) { step.classList.toggle('pred', j === pred); });
      chain.querySelector('.pred-text').textContent = pred === null ? 'n/a' : pred;
      if (chain.dataset.label !== '' && pred !== null) {
        labelled += 1;
        if (parseInt(chain.dataset.label, 10) === pred) { hits += 1; }
      }
      var visible = keep(chain, pred);
      chain.classList.toggle('hidden', !visible);
      if (visible) { shown += 1; }
    });
    document.getElementById('shown').textContent = 'showing ' + shown + ' of ' + chains.length + ' chains';
    document.getElementById('hits').textContent = labelled ?
      'first error found exactly in ' + hits + ' of ' + labelled + ' labelled, scored chains' : '';
  }
  // "#threshold=0.4&filter=mismatch" presets the controls: a link can point at one view of the page
  location.hash.replace(/^#/, '').split('&').forEach(function (pair) {
    var kv = pair.split('=');
    if (kv[0] === 'threshold') { threshold.value = decodeURIComponent(kv[1]); }
    if (kv[0] === 'filter') { filter.value = decodeURIComponent(kv[1]); }
  });
  filter.addEventListener('change', update);
  threshold.addEventListener('input', update);
  update();
  document.querySelectorAll('.step[data-score]').forEach(function (step) {
    step.dataset.computedBg = getComputedStyle(step).backgroundColor;  // what the browser painted
  });
  document.body.dataset.js = 'ok';
})();
"""


def render_report(summary: ChainSummary, records: Sequence[ChainRecord], views: Sequence[ChainView], *,
                  title: str = "verirl: reasoning chains", source: str = "") -> str:
    """The page as a string. `records` (every chain) feed the plots; `views` are the chains drawn, at most
    MAX_CHAINS of them (the first in file order)."""
    shown = views[:MAX_CHAINS]
    more = f" (the first {len(shown)} of {len(views)})" if len(views) > len(shown) else ""
    plots = "".join(_plots(summary, records)) or '<p class="note">no plot: no groups and no labels</p>'
    controls = ('<p><label>show <select id="filter"><option value="all">all chains</option>'
                '<option value="erroneous">labelled erroneous</option>'
                '<option value="mismatch">predicted != labelled</option>'
                '<option value="wrong-answer">wrong final answer</option></select></label> '
                '<label>threshold <input id="threshold" type="number" min="0" max="1" step="0.05" '
                'placeholder="service"></label> <span id="shown"></span> · <span id="hits"></span></p>')
    legend = ('<p class="note">step colour: PRM score from red (0) to green (1); '
              '<span class="mark" style="display:inline;background:#a00">PRM: first error</span> '
              'the first step under the threshold (the service\'s unless set above); '
              '<span class="mark" style="display:inline;background:#0050c8">label: first error</span> '
              'the labelled one.</p>')
    data = json.dumps(summary.to_dict()).replace("<", "\\u003c")  # the numbers, for whoever reads the file
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body data-js=\"pending\">"
            f"<h1>{_e(title)}</h1>" + (f'<p class="note">{_e(source)}</p>' if source else "")
            + f'<h2>Summary</h2>{_summary_table(summary)}<h2>Plots</h2><div id="plots">{plots}</div>'
            f"<h2>Chains{more}</h2>{legend}{controls}<div id=\"chains\">{''.join(_chain(v) for v in shown)}</div>"
            f'<pre id="js-errors"></pre><script type="application/json" id="summary-data">{data}</script>'
            f"<script>{_JS}</script></body></html>\n")


def write_report(path: Path, summary: ChainSummary, records: Sequence[ChainRecord], views: Sequence[ChainView],
                 **kwargs: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(summary, records, views, **kwargs), encoding="utf-8")
