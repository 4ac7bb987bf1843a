"""Request and response schemas of the REST API, and the checking of request bodies.

The schemas are JSON Schema 2020-12 (the dialect of OpenAPI 3.1), declared once here as data.
``openapi.build`` publishes them in the document served at ``/openapi.json``, and
:func:`body_schemas` compiles each route's request-body schema *from that document* with
``jsonschema_rs``, so what is documented is exactly what is checked. Every problem is reported
with its JSON path (``body[3].uid: expected integer, got string``). Numbers are decoded as the
schema judges them: ``2.0`` is an integer and becomes an ``int``.

``parse_*`` turn checked bodies into the typed requests of ``scheduler.cws``.
:func:`read_task` reads a task registration from a stream (``ijson``) instead: nf-cws lists
every input file of a task in it, so it can be megabytes; only the fields wfsched uses are
kept, and ``inputs.fileInputs`` is counted, never held. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Protocol

import ijson
import jsonschema_rs

from scheduler import cws
from scheduler.core import workflow

INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1
EXECUTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"
"""Execution names: what Nextflow run names and DNS-style names use."""
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
POD_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class ValidationError(ValueError):
    """A request body does not match its schema; the message names the path and the problem."""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


_SIZE = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_TEXT = {"type": "string", "maxLength": 4096}

COMPONENTS: dict[str, dict[str, Any]] = {
    "SchedulerConfig": {
        "type": "object",
        "description": (
            "Registers an execution. Fields CWS uses for data locality (WOW: locationAware, "
            "workDir, copyStrategy, ...), dns, volumeClaims and additional are accepted and "
            "recorded but not used."
        ),
        "required": ["strategy"],
        "properties": {
            "strategy": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "<ranking>[-<assignment>], e.g. rank_min-roundrobin (CWS names).",
            },
            "namespace": _nullable(
                {
                    "type": "string",
                    "pattern": NAMESPACE_PATTERN,
                    "description": "Namespace of the execution's pods (default: default).",
                }
            ),
            "memoryPredictor": _nullable(
                {
                    "type": "string",
                    "maxLength": 200,
                    "description": (
                        "Predictor spec, e.g. ponder-offset=none; absent, empty or 'default': "
                        "the server's default predictor (none when it has none)."
                    ),
                }
            ),
            "minMemory": _nullable(dict(_SIZE, description="Floor of planned memory (bytes).")),
            "maxMemory": _nullable(
                dict(_SIZE, minimum=1, description="Cap of planned memory (bytes).")
            ),
            "dns": _nullable(_TEXT),
            "costFunction": _nullable(dict(_TEXT, maxLength=100)),
            "traceEnabled": {"type": ["boolean", "null"]},
            "locationAware": {"type": ["boolean", "null"]},
        },
        "additionalProperties": True,
    },
    "Vertex": {
        "type": "object",
        "required": ["uid", "type"],
        "properties": {
            "uid": {"type": "integer", "minimum": -INT64_MAX, "maximum": INT64_MAX},
            "label": _nullable(dict(_TEXT, maxLength=1000)),
            "type": {"type": "string", "enum": [k.value for k in workflow.VertexKind]},
        },
        "additionalProperties": True,
    },
    "Edge": {
        "type": "object",
        "required": ["uid"],
        "properties": {
            "uid": {"type": "integer", "minimum": -INT64_MAX, "maximum": INT64_MAX},
            "label": _nullable(dict(_TEXT, maxLength=1000)),
            "from": {
                "type": ["integer", "null"],
                "minimum": -INT64_MAX,
                "maximum": INT64_MAX,
                "description": "Source vertex uid; null (an absent endpoint): edge ignored.",
            },
            "to": {
                "type": ["integer", "null"],
                "minimum": -INT64_MAX,
                "maximum": INT64_MAX,
                "description": "Target vertex uid; null (an absent endpoint): edge ignored.",
            },
        },
        "additionalProperties": True,
    },
    "TaskConfig": {
        "type": "object",
        "required": ["task", "runName"],
        "properties": {
            "task": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "description": "Process name: the label of a PROCESS vertex.",
            },
            "runName": {
                "type": "string",
                "pattern": POD_NAME_PATTERN,
                "maxLength": 253,
                "description": "The name of the task's pod.",
            },
            "name": _nullable(_TEXT),
            "inputSize": _nullable(dict(_SIZE, description="Input bytes (null: 0).")),
            "memoryInBytes": _nullable(dict(_SIZE, description="The task's memory request.")),
            "cpus": {"type": ["number", "null"], "minimum": 0, "maximum": 1e9},
            "repetition": _nullable(
                {"type": "integer", "minimum": 0, "maximum": INT32_MAX, "description": "Retry"}
            ),
            "inputs": {"type": ["object", "null"]},
            "workDir": _nullable(_TEXT),
        },
        "additionalProperties": True,
    },
    "TaskMetrics": {
        "type": "object",
        "description": "A valid observation needs peakRss > 0 and realtime >= 0.",
        "properties": {
            "ramRequest": _nullable(dict(_SIZE, description="bytes")),
            "peakVmem": _nullable(dict(_SIZE, description="bytes")),
            "peakRss": _nullable(dict(_SIZE, description="bytes")),
            "realtime": _nullable(dict(_SIZE, description="milliseconds")),
        },
        "additionalProperties": True,
    },
    "TaskRegistered": {
        "type": "object",
        "required": ["memoryInBytes", "rank"],
        "properties": {
            "memoryInBytes": {
                "type": ["integer", "null"],
                "description": "Memory wfsched plans for the task; null: the request stands.",
            },
            "rank": {"type": "integer", "minimum": 0},
        },
    },
    "TaskState": {
        "type": "object",
        "required": ["state", "error"],
        "properties": {
            "state": {"type": "string", "enum": [s.value for s in cws.TaskState]},
            "error": {"type": ["string", "null"]},
        },
    },
    "Result": {
        "type": "object",
        "description": "What the request changed (informational; CWS answers with no body).",
        "additionalProperties": True,
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "leader": {
                "type": ["string", "null"],
                "description": "On 503 from a follower: the identity of the leader, if known.",
            },
        },
    },
}


def uid_list(max_items: int) -> dict[str, Any]:
    """Schema of a DELETE body: a JSON array of uids."""
    return {
        "type": "array",
        "maxItems": max_items,
        "items": {"type": "integer", "minimum": -INT64_MAX, "maximum": INT64_MAX},
    }


def list_of(component: str, max_items: int) -> dict[str, Any]:
    """Schema of a JSON array of ``component`` objects."""
    return {
        "type": "array",
        "maxItems": max_items,
        "items": {"$ref": f"#/components/schemas/{component}"},
    }


BATCH_COUNT: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "maximum": INT32_MAX,
    "description": "Tasks submitted in this batch.",
}


# --- validation -----------------------------------------------------------------------------


class BodySchema:
    """The schema of one route's request body, compiled from the published OpenAPI document.

    ``check`` is pure and thread-safe; it reports the first problem with its JSON path.
    """

    def __init__(self, pointer: str, validator: jsonschema_rs.Validator) -> None:
        self.pointer = pointer
        """Where the schema stands in the document (``#/paths/...``)."""
        self._validator = validator

    def check(self, value: Any) -> None:
        """Return if ``value`` (as :func:`load_json` decodes it) matches the schema.

        Raises:
            ValidationError: At the first mismatch, naming its path (``body[3].uid``).
        """
        problem = next(iter(self._validator.iter_errors(value)), None)
        if problem is not None:
            raise ValidationError(describe(problem))


def body_schemas(document: Mapping[str, Any]) -> dict[tuple[str, str], BodySchema]:
    """The JSON request-body schema of every operation in ``document``, compiled once.

    Keyed by (upper-case method, path template), e.g. ``("POST", "/v1/scheduler/{execution}")``.
    ``$ref``s resolve inside ``document``; nothing is fetched.
    """
    compiled = jsonschema_rs.validator_map_for(dict(document), offline=True)
    out: dict[tuple[str, str], BodySchema] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                pointer = "/".join(
                    ("#/paths", _escape(path), method, "requestBody/content/application~1json")
                )
                out[(method.upper(), path)] = BodySchema(
                    pointer + "/schema", compiled[pointer + "/schema"]
                )
    return out


def _escape(token: str) -> str:
    """One JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def describe(problem: jsonschema_rs.ValidationError) -> str:
    """A one-line message for ``problem`` that starts with the path of the offending value."""
    path = "body" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem.instance_path
    )
    return f"{path}: {_problem(problem.kind, problem.instance) or problem.message[:200]}"


def _problem(kind: jsonschema_rs.ValidationErrorKind, value: Any) -> str | None:
    """What is wrong with ``value``, for the keywords the schemas use (``None``: another)."""
    errors = jsonschema_rs.ValidationErrorKind
    match kind:
        case errors.Type(types=types):
            allowed = " or ".join(sorted(types, key=lambda name: name == "null"))
            return f"expected {allowed}, got {_JSON_TYPES.get(type(value), 'another type')}"
        case errors.Enum(options=options):
            return f"{value!r} is not one of {', '.join(map(str, options))}"
        case errors.Required(property=name):
            return f"missing required field {name!r}"
        case errors.Minimum(limit=limit) | errors.Maximum(limit=limit):
            side = "below the minimum" if isinstance(kind, errors.Minimum) else "above the maximum"
            return f"{value} is {side} {limit}"
        case errors.MinItems(limit=limit) | errors.MaxItems(limit=limit):
            return f"{'fewer' if isinstance(kind, errors.MinItems) else 'more'} than {limit} items"
        case errors.MinLength(limit=1):
            return "must not be empty"
        case errors.MinLength(limit=limit) | errors.MaxLength(limit=limit):
            side = "shorter" if isinstance(kind, errors.MinLength) else "longer"
            return f"{side} than {limit} characters"
        case errors.Pattern(pattern=pattern):
            return f"{str(value)[:80]!r} does not match {pattern}"
    return None


_JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
"""The JSON type name of each Python type a decoded body holds."""


def _number(value: float) -> int | float:
    """A decoded JSON number as the schema judges it: an integral value is an ``int``.

    JSON Schema calls ``2.0`` an integer; making it an ``int`` keeps what passes an
    ``integer`` schema an ``int`` for the code after it.

    Raises:
        ValidationError: Not finite (``1e400``).
    """
    if not math.isfinite(value):
        raise ValidationError(f"body: the number {value} is out of range")
    return int(value) if value.is_integer() and abs(value) <= INT64_MAX else value


def _no_constant(name: str) -> Any:
    raise ValidationError(f"body: {name} is not valid JSON")


def load_json(raw: bytes) -> Any:
    """Decode a JSON body strictly (UTF-8, no NaN/Infinity).

    Raises:
        ValidationError: Empty, not UTF-8, not JSON, nested too deeply, or a number that is
            not finite or has too many digits.
    """
    if not raw.strip():
        raise ValidationError("body: a JSON body is required")
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=lambda text: _number(float(text)),
        )
    except ValidationError:
        raise
    except UnicodeDecodeError:
        raise ValidationError("body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"body: malformed JSON ({exc.msg} at {exc.pos})") from None
    except RecursionError:
        raise ValidationError("body: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise ValidationError(f"body: malformed JSON ({str(exc)[:100]})") from None


# --- typed requests -------------------------------------------------------------------------
# The ``parse_*`` functions take bodies that passed their route's BodySchema.

_KNOWN_CONFIG = ("strategy", "namespace", "memoryPredictor", "minMemory", "maxMemory")


def parse_registration(name: str, body: Any) -> cws.Registration:
    """Build a registration from a checked SchedulerConfig."""
    options = {k: v for k, v in body.items() if k not in _KNOWN_CONFIG}
    return cws.Registration(
        name=name,
        strategy=body["strategy"],
        namespace=body.get("namespace") or "default",
        memory_predictor=body.get("memoryPredictor"),
        min_memory=body.get("minMemory"),
        max_memory=body.get("maxMemory"),
        options=options,
    )


def parse_vertices(body: Any) -> list[cws.Vertex]:
    """Build vertices from a checked list of Vertex."""
    return [
        cws.Vertex(uid=v["uid"], kind=workflow.VertexKind(v["type"]), label=v.get("label"))
        for v in body
    ]


def parse_edges(body: Any) -> list[cws.Edge]:
    """Build edges from a checked list of Edge."""
    return [
        cws.Edge(uid=e["uid"], source=e.get("from"), target=e.get("to"), label=e.get("label"))
        for e in body
    ]


def parse_uids(body: Any) -> list[int]:
    """Return the uids of a checked DELETE body."""
    return list(body)


def parse_batch_count(body: Any) -> int:
    """Return the task count of a checked ``endBatch`` body (a bare JSON integer)."""
    return int(body)


def parse_metrics(body: Any) -> cws.TaskMetrics:
    """Build task metrics from a checked TaskMetrics body."""
    return cws.TaskMetrics(
        ram_request=body.get("ramRequest"),
        peak_vmem=body.get("peakVmem"),
        peak_rss=body.get("peakRss"),
        realtime=body.get("realtime"),
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskBody:
    """What :func:`read_task` keeps of a TaskConfig body.

    Attributes:
        fields: The TaskConfig fields wfsched reads, as sent, with ``inputs`` reduced to ``{}``
            (or ``None``) and a container sent for a scalar field reduced to an empty one of
            its kind, so that the TaskConfig schema judges ``fields`` as it would the body.
        input_files: How many entries ``inputs.fileInputs`` had.
    """

    fields: dict[str, Any]
    input_files: int


def parse_task(body: TaskBody) -> cws.TaskRegistration:
    """Build a task registration from a :class:`TaskBody` whose fields were checked."""
    fields = body.fields
    cpus = fields.get("cpus")
    return cws.TaskRegistration(
        process=fields["task"],
        pod_name=fields["runName"],
        name=fields.get("name"),
        input_size=fields.get("inputSize") or 0,
        memory_bytes=fields.get("memoryInBytes"),
        cpus=None if cpus is None else float(cpus),
        repetition=fields.get("repetition") or 0,
        input_files=body.input_files,
    )


_TASK_FIELDS = frozenset(COMPONENTS["TaskConfig"]["properties"])
"""TaskConfig fields that are kept (``inputs`` reduced); any other field is skipped unread."""
_OPEN = ("start_map", "start_array")
_CLOSE = ("end_map", "end_array")


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes (a file, a request body stream)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""


def read_task(stream: Readable) -> TaskBody:
    """Read a TaskConfig body from ``stream`` without building what wfsched does not use.

    Memory stays small whatever the body holds: one pass over the parser's events keeps the
    top-level TaskConfig fields (a container in their place reduced to an empty one) and counts
    the items of the ``inputs.fileInputs`` array; everything else is skipped. The caller checks
    ``fields`` against the TaskConfig schema before :func:`parse_task`.

    Raises:
        ValidationError: Empty, malformed or not an object.
    """
    fields: dict[str, Any] = {}
    input_files = 0
    in_file_inputs = False
    depth = 0  # containers open before the current event
    started = False
    try:
        for prefix, event, value in ijson.parse(stream, use_float=True):
            started = True
            if event in _CLOSE:
                depth -= 1
                continue
            if depth == 0 and event != "start_map":
                raise ValidationError(f"body: expected object, got {_event_kind(event)}")
            if depth == 1 and prefix in _TASK_FIELDS:  # the value of a top-level field
                fields[prefix] = _kept(event, value)
            elif depth == 2 and prefix == "inputs.fileInputs":  # a later key replaces
                input_files, in_file_inputs = 0, event == "start_array"
            elif depth == 3 and in_file_inputs and prefix == "inputs.fileInputs.item":
                input_files += 1
            if event in _OPEN:
                depth += 1
    except ijson.JSONError as exc:
        if not started:
            raise ValidationError("body: a JSON body is required") from None
        raise ValidationError(f"body: malformed JSON ({_parser_message(exc)})") from None
    except UnicodeDecodeError:
        raise ValidationError("body: not UTF-8") from None
    if not started:
        raise ValidationError("body: a JSON body is required")
    return TaskBody(fields=fields, input_files=input_files)


def _kept(event: str, value: Any) -> Any:
    """What :func:`read_task` keeps of a value that starts with ``event``."""
    if event in _OPEN:
        return {} if event == "start_map" else []
    return _number(value) if isinstance(value, float) else value


def _event_kind(event: str) -> str:
    return {
        "start_map": "object",
        "start_array": "array",
        "string": "string",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(event, event)


def _parser_message(exc: Exception) -> str:
    """The parser's verdict without the excerpt of the body it appends."""
    text = str(exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:]
    return text.replace("\\n", "\n").split("\n")[0].strip(" .'\"")[:100]
