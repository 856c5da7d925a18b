from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Extractor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTRACTOR_UNSPECIFIED: _ClassVar[Extractor]
    BOXED_LAST: _ClassVar[Extractor]
    BOXED_ALL: _ClassVar[Extractor]
    ANSWER_IS: _ClassVar[Extractor]
    GSM8K_HASHES: _ClassVar[Extractor]
    LAST_NUMBER: _ClassVar[Extractor]
    WHOLE_RESPONSE: _ClassVar[Extractor]
    BARE_ANSWER: _ClassVar[Extractor]

class Whitespace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WHITESPACE_UNSPECIFIED: _ClassVar[Whitespace]
    TRAILING: _ClassVar[Whitespace]
    TOKENS: _ClassVar[Whitespace]
    EXACT: _ClassVar[Whitespace]

class CodeExtraction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_EXTRACTION_UNSPECIFIED: _ClassVar[CodeExtraction]
    LAST_BLOCK: _ClassVar[CodeExtraction]
    FIRST_BLOCK: _ClassVar[CodeExtraction]
    ALL_BLOCKS: _ClassVar[CodeExtraction]
    WHOLE: _ClassVar[CodeExtraction]

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    MIN: _ClassVar[Aggregation]
    PROD: _ClassVar[Aggregation]
    LAST: _ClassVar[Aggregation]
    MEAN: _ClassVar[Aggregation]
EXTRACTOR_UNSPECIFIED: Extractor
BOXED_LAST: Extractor
BOXED_ALL: Extractor
ANSWER_IS: Extractor
GSM8K_HASHES: Extractor
LAST_NUMBER: Extractor
WHOLE_RESPONSE: Extractor
BARE_ANSWER: Extractor
WHITESPACE_UNSPECIFIED: Whitespace
TRAILING: Whitespace
TOKENS: Whitespace
EXACT: Whitespace
CODE_EXTRACTION_UNSPECIFIED: CodeExtraction
LAST_BLOCK: CodeExtraction
FIRST_BLOCK: CodeExtraction
ALL_BLOCKS: CodeExtraction
WHOLE: CodeExtraction
AGGREGATION_UNSPECIFIED: Aggregation
MIN: Aggregation
PROD: Aggregation
LAST: Aggregation
MEAN: Aggregation

class MathOptions(_message.Message):
    __slots__ = ("extractors", "precision", "rel_tol", "timeout_s", "gold_is_solution")
    EXTRACTORS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    REL_TOL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    GOLD_IS_SOLUTION_FIELD_NUMBER: _ClassVar[int]
    extractors: _containers.RepeatedScalarFieldContainer[Extractor]
    precision: int
    rel_tol: float
    timeout_s: float
    gold_is_solution: bool
    def __init__(self, extractors: _Optional[_Iterable[_Union[Extractor, str]]] = ..., precision: _Optional[int] = ..., rel_tol: _Optional[float] = ..., timeout_s: _Optional[float] = ..., gold_is_solution: _Optional[bool] = ...) -> None: ...

class MathItem(_message.Message):
    __slots__ = ("id", "response", "gold", "options")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    response: str
    gold: str
    options: MathOptions
    def __init__(self, id: _Optional[str] = ..., response: _Optional[str] = ..., gold: _Optional[str] = ..., options: _Optional[_Union[MathOptions, _Mapping]] = ...) -> None: ...

class MathResult(_message.Message):
    __slots__ = ("id", "status", "judged", "correct", "score", "extracted", "normalized", "gold_normalized", "reason", "elapsed_ms", "cached")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[MathResult.Status]
        CORRECT: _ClassVar[MathResult.Status]
        INCORRECT: _ClassVar[MathResult.Status]
        NO_ANSWER: _ClassVar[MathResult.Status]
        TIMEOUT: _ClassVar[MathResult.Status]
        PARSE_ERROR: _ClassVar[MathResult.Status]
        INVALID_ARGUMENT: _ClassVar[MathResult.Status]
        INTERNAL_ERROR: _ClassVar[MathResult.Status]
    STATUS_UNSPECIFIED: MathResult.Status
    CORRECT: MathResult.Status
    INCORRECT: MathResult.Status
    NO_ANSWER: MathResult.Status
    TIMEOUT: MathResult.Status
    PARSE_ERROR: MathResult.Status
    INVALID_ARGUMENT: MathResult.Status
    INTERNAL_ERROR: MathResult.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    GOLD_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: MathResult.Status
    judged: bool
    correct: bool
    score: float
    extracted: str
    normalized: str
    gold_normalized: str
    reason: str
    elapsed_ms: float
    cached: bool
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[MathResult.Status, str]] = ..., judged: _Optional[bool] = ..., correct: _Optional[bool] = ..., score: _Optional[float] = ..., extracted: _Optional[str] = ..., normalized: _Optional[str] = ..., gold_normalized: _Optional[str] = ..., reason: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., cached: _Optional[bool] = ...) -> None: ...

class CheckMathRequest(_message.Message):
    __slots__ = ("items", "options", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MathItem]
    options: MathOptions
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[MathItem, _Mapping]]] = ..., options: _Optional[_Union[MathOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CheckMathResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MathResult]
    def __init__(self, results: _Optional[_Iterable[_Union[MathResult, _Mapping]]] = ...) -> None: ...

class StdioCase(_message.Message):
    __slots__ = ("input", "output")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    input: str
    output: str
    def __init__(self, input: _Optional[str] = ..., output: _Optional[str] = ...) -> None: ...

class StdioTests(_message.Message):
    __slots__ = ("cases", "whitespace")
    CASES_FIELD_NUMBER: _ClassVar[int]
    WHITESPACE_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[StdioCase]
    whitespace: Whitespace
    def __init__(self, cases: _Optional[_Iterable[_Union[StdioCase, _Mapping]]] = ..., whitespace: _Optional[_Union[Whitespace, str]] = ...) -> None: ...

class AssertTests(_message.Message):
    __slots__ = ("code", "entry_point")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    code: str
    entry_point: str
    def __init__(self, code: _Optional[str] = ..., entry_point: _Optional[str] = ...) -> None: ...

class CallCase(_message.Message):
    __slots__ = ("args_json", "kwargs_json", "expected_json")
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JSON_FIELD_NUMBER: _ClassVar[int]
    args_json: str
    kwargs_json: str
    expected_json: str
    def __init__(self, args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ..., expected_json: _Optional[str] = ...) -> None: ...

class CallTests(_message.Message):
    __slots__ = ("fn", "cases", "float_rel_tol")
    FN_FIELD_NUMBER: _ClassVar[int]
    CASES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_REL_TOL_FIELD_NUMBER: _ClassVar[int]
    fn: str
    cases: _containers.RepeatedCompositeFieldContainer[CallCase]
    float_rel_tol: float
    def __init__(self, fn: _Optional[str] = ..., cases: _Optional[_Iterable[_Union[CallCase, _Mapping]]] = ..., float_rel_tol: _Optional[float] = ...) -> None: ...

class CodeTests(_message.Message):
    __slots__ = ("stdio", "assert_code", "call")
    STDIO_FIELD_NUMBER: _ClassVar[int]
    ASSERT_CODE_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    stdio: StdioTests
    assert_code: AssertTests
    call: CallTests
    def __init__(self, stdio: _Optional[_Union[StdioTests, _Mapping]] = ..., assert_code: _Optional[_Union[AssertTests, _Mapping]] = ..., call: _Optional[_Union[CallTests, _Mapping]] = ...) -> None: ...

class CodeLimits(_message.Message):
    __slots__ = ("cpu_time_s", "memory_bytes", "output_bytes", "wall_time_s")
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    cpu_time_s: float
    memory_bytes: int
    output_bytes: int
    wall_time_s: float
    def __init__(self, cpu_time_s: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ..., wall_time_s: _Optional[float] = ...) -> None: ...

class CodeItem(_message.Message):
    __slots__ = ("id", "language", "response", "tests", "limits", "extraction", "stop_at_first_failure")
    ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_FIELD_NUMBER: _ClassVar[int]
    STOP_AT_FIRST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    id: str
    language: str
    response: str
    tests: CodeTests
    limits: CodeLimits
    extraction: CodeExtraction
    stop_at_first_failure: bool
    def __init__(self, id: _Optional[str] = ..., language: _Optional[str] = ..., response: _Optional[str] = ..., tests: _Optional[_Union[CodeTests, _Mapping]] = ..., limits: _Optional[_Union[CodeLimits, _Mapping]] = ..., extraction: _Optional[_Union[CodeExtraction, str]] = ..., stop_at_first_failure: _Optional[bool] = ...) -> None: ...

class TestOutcome(_message.Message):
    __slots__ = ("index", "status", "detail", "cpu_time_s")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: CodeResult.Status
    detail: str
    cpu_time_s: float
    def __init__(self, index: _Optional[int] = ..., status: _Optional[_Union[CodeResult.Status, str]] = ..., detail: _Optional[str] = ..., cpu_time_s: _Optional[float] = ...) -> None: ...

class CodeResult(_message.Message):
    __slots__ = ("id", "status", "judged", "correct", "score", "passed", "total", "tests", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "cpu_time_s", "peak_memory_bytes", "reason", "elapsed_ms", "extracted")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[CodeResult.Status]
        PASSED: _ClassVar[CodeResult.Status]
        FAILED: _ClassVar[CodeResult.Status]
        RUNTIME_ERROR: _ClassVar[CodeResult.Status]
        TIMEOUT: _ClassVar[CodeResult.Status]
        MEMORY_LIMIT: _ClassVar[CodeResult.Status]
        OUTPUT_LIMIT: _ClassVar[CodeResult.Status]
        COMPILE_ERROR: _ClassVar[CodeResult.Status]
        NO_CODE: _ClassVar[CodeResult.Status]
        SANDBOX_ERROR: _ClassVar[CodeResult.Status]
        INVALID_ARGUMENT: _ClassVar[CodeResult.Status]
        INTERNAL_ERROR: _ClassVar[CodeResult.Status]
        UNAVAILABLE: _ClassVar[CodeResult.Status]
    STATUS_UNSPECIFIED: CodeResult.Status
    PASSED: CodeResult.Status
    FAILED: CodeResult.Status
    RUNTIME_ERROR: CodeResult.Status
    TIMEOUT: CodeResult.Status
    MEMORY_LIMIT: CodeResult.Status
    OUTPUT_LIMIT: CodeResult.Status
    COMPILE_ERROR: CodeResult.Status
    NO_CODE: CodeResult.Status
    SANDBOX_ERROR: CodeResult.Status
    INVALID_ARGUMENT: CodeResult.Status
    INTERNAL_ERROR: CodeResult.Status
    UNAVAILABLE: CodeResult.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: CodeResult.Status
    judged: bool
    correct: bool
    score: float
    passed: int
    total: int
    tests: _containers.RepeatedCompositeFieldContainer[TestOutcome]
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    cpu_time_s: float
    peak_memory_bytes: int
    reason: str
    elapsed_ms: float
    extracted: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[CodeResult.Status, str]] = ..., judged: _Optional[bool] = ..., correct: _Optional[bool] = ..., score: _Optional[float] = ..., passed: _Optional[int] = ..., total: _Optional[int] = ..., tests: _Optional[_Iterable[_Union[TestOutcome, _Mapping]]] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., cpu_time_s: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., reason: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., extracted: _Optional[str] = ...) -> None: ...

class RunCodeRequest(_message.Message):
    __slots__ = ("items", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CodeItem]
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[CodeItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RunCodeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CodeResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CodeResult, _Mapping]]] = ...) -> None: ...

class StepsItem(_message.Message):
    __slots__ = ("id", "problem", "steps", "text", "separator", "aggregation", "threshold", "gold")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    id: str
    problem: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    text: str
    separator: str
    aggregation: Aggregation
    threshold: float
    gold: str
    def __init__(self, id: _Optional[str] = ..., problem: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., text: _Optional[str] = ..., separator: _Optional[str] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., threshold: _Optional[float] = ..., gold: _Optional[str] = ...) -> None: ...

class StepsResult(_message.Message):
    __slots__ = ("id", "status", "judged", "step_scores", "score", "first_error", "reason", "elapsed_ms", "answer")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[StepsResult.Status]
        OK: _ClassVar[StepsResult.Status]
        TIMEOUT: _ClassVar[StepsResult.Status]
        INVALID_ARGUMENT: _ClassVar[StepsResult.Status]
        INTERNAL_ERROR: _ClassVar[StepsResult.Status]
        UNAVAILABLE: _ClassVar[StepsResult.Status]
        TOO_LONG: _ClassVar[StepsResult.Status]
    STATUS_UNSPECIFIED: StepsResult.Status
    OK: StepsResult.Status
    TIMEOUT: StepsResult.Status
    INVALID_ARGUMENT: StepsResult.Status
    INTERNAL_ERROR: StepsResult.Status
    UNAVAILABLE: StepsResult.Status
    TOO_LONG: StepsResult.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    STEP_SCORES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FIRST_ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: StepsResult.Status
    judged: bool
    step_scores: _containers.RepeatedScalarFieldContainer[float]
    score: float
    first_error: int
    reason: str
    elapsed_ms: float
    answer: MathResult
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[StepsResult.Status, str]] = ..., judged: _Optional[bool] = ..., step_scores: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., first_error: _Optional[int] = ..., reason: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., answer: _Optional[_Union[MathResult, _Mapping]] = ...) -> None: ...

class ScoreStepsRequest(_message.Message):
    __slots__ = ("items", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StepsItem]
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[StepsItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ScoreStepsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StepsResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StepsResult, _Mapping]]] = ...) -> None: ...

class CandidatesItem(_message.Message):
    __slots__ = ("id", "problem", "prefix_steps", "candidates")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PREFIX_STEPS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    id: str
    problem: str
    prefix_steps: _containers.RepeatedScalarFieldContainer[str]
    candidates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., problem: _Optional[str] = ..., prefix_steps: _Optional[_Iterable[str]] = ..., candidates: _Optional[_Iterable[str]] = ...) -> None: ...

class CandidatesResult(_message.Message):
    __slots__ = ("id", "status", "judged", "scores", "best", "reason", "elapsed_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: StepsResult.Status
    judged: bool
    scores: _containers.RepeatedScalarFieldContainer[float]
    best: int
    reason: str
    elapsed_ms: float
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[StepsResult.Status, str]] = ..., judged: _Optional[bool] = ..., scores: _Optional[_Iterable[float]] = ..., best: _Optional[int] = ..., reason: _Optional[str] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class ScoreCandidatesRequest(_message.Message):
    __slots__ = ("items", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CandidatesItem]
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[CandidatesItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ScoreCandidatesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CandidatesResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CandidatesResult, _Mapping]]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("math", "code", "steps", "candidates", "math_options")
    MATH_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MATH_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    math: MathItem
    code: CodeItem
    steps: StepsItem
    candidates: CandidatesItem
    math_options: MathOptions
    def __init__(self, math: _Optional[_Union[MathItem, _Mapping]] = ..., code: _Optional[_Union[CodeItem, _Mapping]] = ..., steps: _Optional[_Union[StepsItem, _Mapping]] = ..., candidates: _Optional[_Union[CandidatesItem, _Mapping]] = ..., math_options: _Optional[_Union[MathOptions, _Mapping]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("math", "code", "steps", "candidates")
    MATH_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    math: MathResult
    code: CodeResult
    steps: StepsResult
    candidates: CandidatesResult
    def __init__(self, math: _Optional[_Union[MathResult, _Mapping]] = ..., code: _Optional[_Union[CodeResult, _Mapping]] = ..., steps: _Optional[_Union[StepsResult, _Mapping]] = ..., candidates: _Optional[_Union[CandidatesResult, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_items_per_request", "max_message_bytes", "max_string_bytes", "max_tests_per_item", "queue_capacity", "math_timeout_s", "max_math_timeout_s", "code_cpu_time_s", "max_code_cpu_time_s", "code_memory_bytes", "max_code_memory_bytes")
    MAX_ITEMS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_STRING_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TESTS_PER_ITEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MATH_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_MATH_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    CODE_CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CODE_CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    CODE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CODE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_items_per_request: int
    max_message_bytes: int
    max_string_bytes: int
    max_tests_per_item: int
    queue_capacity: int
    math_timeout_s: float
    max_math_timeout_s: float
    code_cpu_time_s: float
    max_code_cpu_time_s: float
    code_memory_bytes: int
    max_code_memory_bytes: int
    def __init__(self, max_items_per_request: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_string_bytes: _Optional[int] = ..., max_tests_per_item: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., math_timeout_s: _Optional[float] = ..., max_math_timeout_s: _Optional[float] = ..., code_cpu_time_s: _Optional[float] = ..., max_code_cpu_time_s: _Optional[float] = ..., code_memory_bytes: _Optional[int] = ..., max_code_memory_bytes: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "capabilities", "limits", "math_workers", "code_slots", "sandbox_mode", "sandbox_missing", "prm_model", "prm_details")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MATH_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CODE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_MODE_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_MISSING_FIELD_NUMBER: _ClassVar[int]
    PRM_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRM_DETAILS_FIELD_NUMBER: _ClassVar[int]
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    math_workers: int
    code_slots: int
    sandbox_mode: str
    sandbox_missing: _containers.RepeatedScalarFieldContainer[str]
    prm_model: str
    prm_details: str
    def __init__(self, version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., math_workers: _Optional[int] = ..., code_slots: _Optional[int] = ..., sandbox_mode: _Optional[str] = ..., sandbox_missing: _Optional[_Iterable[str]] = ..., prm_model: _Optional[str] = ..., prm_details: _Optional[str] = ...) -> None: ...
