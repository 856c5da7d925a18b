"""A hand-scored report page shared by tests/test_report.py and tests/test_report_browser.py."""

from __future__ import annotations

from verifier_service.chain_metrics import ChainRecord, summarize
from verifier_service.report import ChainView, render_report

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
