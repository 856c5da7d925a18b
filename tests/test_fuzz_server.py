"""Request handling under random and malformed input: a real server on port 0, hypothesis for the input.

What must hold for any input: the call ends before its deadline (no hang), with either one
result per item carrying a real status, or a clean caller-error code (INVALID_ARGUMENT,
RESOURCE_EXHAUSTED), never INTERNAL or UNKNOWN; and afterwards the server still answers
a normal request. Inputs: random and pathological strings (huge, unicode, control
characters), random enum numbers, negative/NaN/infinite timeouts, precisions and
tolerances, empty and duplicate ids, over-long batches and request ids, and raw bytes
(random, and valid messages with flipped bytes) sent through a generic channel call.
"""

from __future__ import annotations

import collections
import re
import time

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from verifier_service.config import ServerConfig
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pb_grpc
from verifier_service.server import create_server

pytestmark = pytest.mark.slow  # 15-30 s in all, bounded by the example counts below

DEADLINE_S = 30.0  # far above any legal call here (1 s per item at most, 8 items, 2 workers)
CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
CONFIG = ServerConfig(address="127.0.0.1:0", math_workers=2, math_timeout_s=0.5, max_math_timeout_s=1.0,
                      max_items_per_request=8, max_string_bytes=4096, max_message_bytes=256 * 1024, replay_size=32)
FUZZ = settings(deadline=None, database=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])

MATH_JUDGED = {pb.MathResult.CORRECT, pb.MathResult.INCORRECT, pb.MathResult.NO_ANSWER}
NOT_RUN = {pb.CodeResult.INVALID_ARGUMENT, pb.CodeResult.UNAVAILABLE, pb.CodeResult.SANDBOX_ERROR}

# ---------------------------------------------------------------------------- strategies

TRICKY = ["", " ", "\x00", "\x1b[2J", "\u202e\u2066", "\ufeff42", "ｆｕｌｌ", "𝟙𝟚", "\\boxed{", "\\boxed{}",
          "\\boxed{\\boxed{1}}", "\\frac{1}{0}", "1/0", "0^0", "nan", "-inf", "1e999999", "10**10**10",
          "\\sqrt{-1}", "x^x^x^x^x^x^x^x", "(" * 300, "\\left(" * 50, "#### ", "The answer is", "{" * 100 + "}" * 99,
          "\\begin{pmatrix}1&2\\end{pmatrix}", "\\{x | x > 0\\}", "9" * 4000, "0." + "3" * 2000, "\\infty"]
plain_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),  # any code point but surrogates (not UTF-8)
    st.text(st.characters(max_codepoint=0x7f), max_size=200),  # ASCII incl. control characters
    st.sampled_from(TRICKY),
)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Pick a strategy with the given weights (st.one_of would pick evenly among distinct ones)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


huge_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1000, 100_000))
text = weighted((40, plain_text), (1, huge_text))
answer = st.one_of(st.sampled_from(["1", "x+1", "\\frac{1}{2}", "0.5", "(1, 2)", "\\sqrt{2}", "A", "\\{1,2\\}"]),
                   st.integers(-10 ** 6, 10 ** 6).map(str), st.floats(allow_nan=False, width=32).map(repr))
response = st.one_of(text, answer, answer.map(lambda a: f"so the answer is \\boxed{{{a}}}"),
                     st.tuples(plain_text, answer).map(lambda p: f"{p[0]} #### {p[1]}"))
int32 = st.integers(-2 ** 31, 2 ** 31 - 1)
real = st.one_of(st.just(0.0), st.floats(0, 2), st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([-1.0, 1e-300, 5e-324, 1e308, float("nan"), float("inf"), -float("inf")]))
ids = st.one_of(st.sampled_from(["", "a", "b"]), plain_text)  # a small pool: duplicates happen


@st.composite
def math_options(draw, wild: bool) -> pb.MathOptions:
    """wild: any numbers (mostly refused); else values a server accepts, edge cases included."""
    enum_number = st.one_of(st.integers(0, 8), int32) if wild else st.integers(1, 7)
    options = pb.MathOptions(extractors=draw(st.lists(enum_number, max_size=4)))
    options.rel_tol = draw(real if wild else st.sampled_from([0.0, 1e-300, 1e-9, 0.5, 0.999]))
    options.timeout_s = draw(real if wild else st.sampled_from([0.0, 0.0, 0.3, 1.0, 1e9]))
    if draw(st.booleans()):
        options.precision = draw(st.one_of(st.integers(-3, 120), int32) if wild else st.integers(0, 100))
    if draw(st.booleans()):
        options.gold_is_solution = draw(st.booleans())
    return options


# Wild options in about 1 of 16 places: most are refused, and one refusal fails the whole batch.
options_or_none = weighted((9, st.none()), (6, math_options(wild=False)), (1, math_options(wild=True)))


@st.composite
def math_item(draw) -> pb.MathItem:
    item = pb.MathItem(id=draw(ids), response=draw(response), gold=draw(weighted((5, answer), (1, text))))
    options = draw(options_or_none)
    if options is not None:
        item.options.CopyFrom(options)
    return item


@st.composite
def check_math_request(draw) -> pb.CheckMathRequest:
    request = pb.CheckMathRequest(items=draw(st.lists(math_item(), max_size=10)),
                                  request_id=draw(weighted((6, st.just("")), (1, st.sampled_from(["r1", "r2"])), (1, text))))
    options = draw(options_or_none)
    if options is not None:
        request.options.CopyFrom(options)
    return request


# Code items never name a language the sandbox runs: random programs are not what is fuzzed here.
language = st.one_of(st.sampled_from(["cobol", "Python 2", "c++17 ", "\x00python"]), text.map("no-such-{}".format))


@st.composite
def verify_request(draw) -> pb.VerifyRequest:
    kind = draw(weighted((6, st.just("math")), (1, st.just("code")), (1, st.just("steps")),
                         (1, st.just("candidates")), (1, st.none())))  # None: a request with no item
    request = pb.VerifyRequest()
    if kind == "math":
        request.math.CopyFrom(draw(math_item()))
    elif kind == "code":
        request.code.CopyFrom(pb.CodeItem(id=draw(ids), language=draw(language), response=draw(text),
                                          extraction=draw(int32)))
    elif kind == "steps":
        request.steps.CopyFrom(pb.StepsItem(id=draw(ids), problem=draw(text), steps=draw(st.lists(text, max_size=3)),
                                            aggregation=draw(int32)))
    elif kind == "candidates":
        request.candidates.CopyFrom(pb.CandidatesItem(id=draw(ids), candidates=draw(st.lists(text, max_size=3))))
    options = draw(options_or_none)
    if options is not None:
        request.math_options.CopyFrom(options)
    return request


@st.composite
def mutated(draw, message: st.SearchStrategy) -> bytes:
    """A valid message's bytes with a few bytes flipped, cut or inserted (parses more often than noise)."""
    data = bytearray(draw(message).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def raw(message: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.binary(max_size=512), mutated(message))


# ---------------------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def server():
    server, _port = create_server(CONFIG)
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 4 * 1024 * 1024)]) as c:
        yield c


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.VerifierStub(channel)


@pytest.fixture(scope="module", autouse=True)
def still_serving(server, stub):
    """After all the fuzzing, a normal request gets a normal answer and no work is left behind."""
    yield
    item = pb.MathItem(id="after", gold="\\frac{1}{2}", response="The answer is \\boxed{0.5}")
    result = stub.CheckMath(pb.CheckMathRequest(items=[item]), timeout=10).results[0]
    assert result.status == pb.MathResult.CORRECT
    deadline = time.monotonic() + 10
    while (stats := server.pool.stats()).queued or stats.in_flight:
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)


def _clean(error: grpc.RpcError) -> None:
    event(f"refused {error.code().name} " + re.sub(r"\[\d+\]", "[]", (error.details() or "").split(":")[0]))  # shown by --hypothesis-show-statistics: is the fuzz reaching past validation?
    assert error.code() in CLEAN, (error.code(), error.details())
    assert error.details()  # a message that names the problem


def _math_results_match(items, results) -> None:
    event(f"answered {len(results)} item(s)" if results else "answered, no items")
    assert [r.id for r in results] == [i.id for i in items]
    for result in results:
        assert result.status != pb.MathResult.STATUS_UNSPECIFIED
        assert result.judged == (result.status in MATH_JUDGED)
        assert result.score == (1.0 if result.status == pb.MathResult.CORRECT else 0.0)


def _check_stream(sent: list[pb.VerifyRequest], responses: list[pb.VerifyResponse]) -> None:
    """A stream that ended OK answered every item once, by kind and id."""
    event(f"stream answered {len(responses)} item(s)")
    def key(message, oneof):
        which = message.WhichOneof(oneof)
        return which, getattr(message, which).id
    assert collections.Counter(key(r, "result") for r in responses) == collections.Counter(key(s, "item") for s in sent)
    for response in responses:
        result = getattr(response, response.WhichOneof("result"))
        assert result.status != 0
        if response.WhichOneof("result") == "code":
            assert result.status in NOT_RUN and not result.judged


# ---------------------------------------------------------------------------- properties

@settings(FUZZ, max_examples=600)
@given(request=check_math_request())
def test_check_math_answers_or_refuses_cleanly(stub, request):
    try:
        response = stub.CheckMath(request, timeout=DEADLINE_S)
    except grpc.RpcError as error:
        _clean(error)
        return
    _math_results_match(request.items, response.results)


@settings(FUZZ, max_examples=300)
@given(requests=st.lists(verify_request(), max_size=8))
def test_verify_stream_answers_or_refuses_cleanly(stub, requests):
    responses = []
    try:
        for response in stub.Verify(iter(requests), timeout=DEADLINE_S):
            responses.append(response)
    except grpc.RpcError as error:
        _clean(error)
        return
    _check_stream(requests, responses)


@settings(FUZZ, max_examples=400)
@given(method=st.sampled_from(["CheckMath", "ScoreSteps", "ScoreCandidates", "GetServerInfo"]), data=st.data())
def test_raw_bytes_to_unary_methods(channel, method, data):
    request_class = {"CheckMath": pb.CheckMathRequest, "ScoreSteps": pb.ScoreStepsRequest,
                     "ScoreCandidates": pb.ScoreCandidatesRequest, "GetServerInfo": pb.GetServerInfoRequest}[method]
    response_class = {"CheckMath": pb.CheckMathResponse, "ScoreSteps": pb.ScoreStepsResponse,
                      "ScoreCandidates": pb.ScoreCandidatesResponse, "GetServerInfo": pb.ServerInfo}[method]
    strategy = check_math_request() if method == "CheckMath" else st.just(request_class())
    body = data.draw(raw(strategy))
    call = channel.unary_unary(f"/verifier.v1.Verifier/{method}")  # no serializers: bytes in, bytes out
    try:
        answer = response_class.FromString(call(body, timeout=DEADLINE_S))
    except grpc.RpcError as error:
        _clean(error)
        return
    request = request_class.FromString(body)  # it was answered, so it must have been a valid message
    if method == "CheckMath":
        _math_results_match(request.items, answer.results)
    elif method != "GetServerInfo":
        assert [r.id for r in answer.results] == [i.id for i in request.items]


@settings(FUZZ, max_examples=200)
@given(chunks=st.lists(raw(verify_request()), max_size=6))
def test_raw_bytes_to_the_verify_stream(channel, chunks):
    call = channel.stream_stream("/verifier.v1.Verifier/Verify")
    try:
        answers = [pb.VerifyResponse.FromString(b) for b in call(iter(chunks), timeout=DEADLINE_S)]
    except grpc.RpcError as error:
        _clean(error)
        return
    _check_stream([pb.VerifyRequest.FromString(c) for c in chunks], answers)


def test_undecodable_bytes_are_invalid_argument(channel):
    with pytest.raises(grpc.RpcError) as error:
        channel.unary_unary("/verifier.v1.Verifier/CheckMath")(b"\xff\xff\xff\xff", timeout=10)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == ("request: the bytes are not a valid request message of "
                                     "/verifier.v1.Verifier/CheckMath")
    with pytest.raises(grpc.RpcError) as error:
        list(channel.stream_stream("/verifier.v1.Verifier/Verify")(iter([b"\x0a\x05ab"]), timeout=10))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
