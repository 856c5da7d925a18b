"""Property tests: the extractor and the checker never crash and always give a status."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.extract import DEFAULT_ORDER, EXTRACTORS, extract_answers
from verifier_service.math import Extractor, MathOptions, MathStatus, check

LATEX_PIECES = st.sampled_from([
    "\\frac", "{", "}", "(", ")", "[", "]", "\\sqrt", "^", "_", "!", "x", "y", "i", "e", "\\pi", "\\infty", "1", "2",
    "0.5", "10", "-", "+", "*", "/", ",", "=", "<", "\\le", "\\{", "\\}", "\\cup", "\\text{cm}", "\\%", "^\\circ",
    "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "\\pm", "\\boxed{", "\\left(", "\\right)", " ", "\\sin", "\\log",
    "|", "\\overline{3}", "e5", "_7", "\\dots", "\\$", "or", "and",
])
LATEXISH = st.lists(LATEX_PIECES, max_size=14).map("".join)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.text(max_size=300))
def test_extractors_never_crash(text):
    for name in EXTRACTORS:
        found = EXTRACTORS[name](text)
        assert isinstance(found, list) and all(isinstance(item, str) for item in found)
    result = extract_answers(text, DEFAULT_ORDER)
    assert result is None or result[0] in DEFAULT_ORDER


@FAST
@given(LATEXISH, LATEXISH)
def test_check_always_gives_a_status(gold, answer):
    verdict = check(gold, f"\\boxed{{{answer}}}")
    assert isinstance(verdict.status, MathStatus)
    assert verdict.status is not MathStatus.INTERNAL_ERROR


@FAST
@given(LATEXISH)
def test_an_answer_equals_itself(answer):
    verdict = check(answer, answer, MathOptions(extractors=(Extractor.WHOLE_RESPONSE,), gold_is_solution=False))
    assert verdict.status in (MathStatus.CORRECT, MathStatus.NO_ANSWER, MathStatus.PARSE_ERROR), verdict


@FAST
@given(st.text(max_size=200), st.text(max_size=200))
def test_check_on_arbitrary_text(gold, response):
    assert isinstance(check(gold, response).status, MathStatus)
