"""Request and response schemas of the REST API, and the validation of request bodies.

The schemas are JSON Schema (2020-12, the dialect of OpenAPI 3.1) written once here; the OpenAPI
document (``openapi.py``) publishes them and :func:`validate` checks bodies against the same
dicts, so documentation and validation cannot drift apart. ``validate`` implements the subset the
schemas use (``type`` incl. lists, ``properties``, ``required``, ``additionalProperties``,
``items``, ``minItems``/``maxItems``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``pattern``, ``enum``, ``$ref`` to a component) and reports the first problem with its JSON path.

``parse_*`` turn validated bodies into the typed requests of ``scheduler.cws``.
:func:`read_task` parses a task registration from a stream (``ijson``) instead: nf-cws lists
every input file of a task in it, so it can be megabytes; only the fields wfsched uses are
built, and ``inputs.fileInputs`` is counted, never held. Everything here is pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import ijson

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

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def validate(value: Any, schema: Mapping[str, Any], path: str = "body") -> None:
    """Check ``value`` against ``schema``.

    Raises:
        ValidationError: At the first mismatch, naming its path (``body[3].uid``).
    """
    ref = schema.get("$ref")
    if ref is not None:
        schema = COMPONENTS[str(ref).rsplit("/", 1)[-1]]
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in allowed):
            raise ValidationError(f"{path}: expected {' or '.join(allowed)}, got {_kind(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValidationError(f"{path}: {value!r} is not one of {', '.join(schema['enum'])}")
    if isinstance(value, str):
        _check_string(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ValidationError(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ValidationError(f"{path}: {value} is above the maximum {schema['maximum']}")
    elif isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise ValidationError(f"{path}: more than {schema['maxItems']} items")
        if len(value) < schema.get("minItems", 0):
            raise ValidationError(f"{path}: fewer than {schema['minItems']} items")
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                validate(item, items, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                raise ValidationError(f"{path}: missing required field {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                validate(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValidationError(f"{path}: unknown field {key!r}")


def _check_string(value: str, schema: Mapping[str, Any], path: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise ValidationError(f"{path}: must not be empty")
    if len(value) > schema.get("maxLength", len(value)):
        raise ValidationError(f"{path}: longer than {schema['maxLength']} characters")
    pattern = schema.get("pattern")
    if pattern is not None:
        compiled = _PATTERNS.get(pattern)
        if compiled is None:
            compiled = _PATTERNS[pattern] = re.compile(pattern)
        if not compiled.fullmatch(value):
            raise ValidationError(f"{path}: {value[:80]!r} does not match {pattern}")


def _no_constant(name: str) -> Any:
    raise ValidationError(f"body: {name} is not valid JSON")


def load_json(raw: bytes) -> Any:
    """Decode a JSON body strictly (UTF-8, no NaN/Infinity).

    Raises:
        ValidationError: Empty, not UTF-8, not JSON, or nested too deeply.
    """
    if not raw.strip():
        raise ValidationError("body: a JSON body is required")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValidationError("body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"body: malformed JSON ({exc.msg} at {exc.pos})") from None
    except RecursionError:
        raise ValidationError("body: nested too deeply") from None


# --- typed requests -------------------------------------------------------------------------

_KNOWN_CONFIG = ("strategy", "namespace", "memoryPredictor", "minMemory", "maxMemory")


def parse_registration(name: str, body: Any) -> cws.Registration:
    """Build a registration from a validated SchedulerConfig."""
    validate(body, COMPONENTS["SchedulerConfig"])
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


def parse_vertices(body: Any, max_items: int) -> list[cws.Vertex]:
    """Build vertices from a validated list."""
    validate(body, list_of("Vertex", max_items))
    return [
        cws.Vertex(uid=v["uid"], kind=workflow.VertexKind(v["type"]), label=v.get("label"))
        for v in body
    ]


def parse_edges(body: Any, max_items: int) -> list[cws.Edge]:
    """Build edges from a validated list."""
    validate(body, list_of("Edge", max_items))
    return [
        cws.Edge(uid=e["uid"], source=e.get("from"), target=e.get("to"), label=e.get("label"))
        for e in body
    ]


def parse_uids(body: Any, max_items: int) -> list[int]:
    """Return the uids of a DELETE body."""
    validate(body, uid_list(max_items))
    return list(body)


def parse_batch_count(body: Any) -> int:
    """Return the task count of an ``endBatch`` body (a bare JSON integer)."""
    validate(body, BATCH_COUNT)
    return int(body)


def parse_task(body: Any, *, input_files: int | None = None) -> cws.TaskRegistration:
    """Build a task registration from a validated TaskConfig.

    ``input_files`` is the number of ``inputs.fileInputs`` entries when the caller counted them
    already (:func:`read_task`); otherwise they are counted in ``body``.
    """
    validate(body, COMPONENTS["TaskConfig"])
    cpus = body.get("cpus")
    if input_files is None:
        files = (body.get("inputs") or {}).get("fileInputs")
        input_files = len(files) if isinstance(files, list) else 0
    return cws.TaskRegistration(
        process=body["task"],
        pod_name=body["runName"],
        name=body.get("name"),
        input_size=body.get("inputSize") or 0,
        memory_bytes=body.get("memoryInBytes"),
        cpus=None if cpus is None else float(cpus),
        repetition=body.get("repetition") or 0,
        input_files=input_files,
    )


_TASK_SCALARS = frozenset(
    key for key in COMPONENTS["TaskConfig"]["properties"] if key not in ("inputs",)
)
"""TaskConfig fields that are built (all scalars); any other field is skipped unread."""
_Event = tuple[str, str, Any]
_OPEN = ("start_map", "start_array")
_CLOSE = ("end_map", "end_array")


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes (a file, a request body stream)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""


def read_task(stream: Readable) -> cws.TaskRegistration:
    """Parse a TaskConfig body from ``stream`` without building what wfsched does not use.

    Memory stays small whatever the body holds: scalar fields are built and validated as by
    :func:`parse_task`; ``inputs`` is walked and its ``fileInputs`` entries counted; unknown
    fields are skipped. Errors name the field as :func:`validate` does.

    Raises:
        ValidationError: Empty, malformed or invalid body.
    """
    events = ijson.parse(stream, use_float=True)
    fields: dict[str, Any] = {}
    input_files = 0
    first: _Event | None = None
    try:
        first = next(events, None)
        if first is None:
            raise ValidationError("body: a JSON body is required")
        if first[1] != "start_map":
            raise ValidationError(f"body: expected object, got {_event_kind(first[1])}")
        for _prefix, event, value in events:
            if event == "end_map":
                break
            key = str(value)  # a map_key: the next event starts its value
            _prefix, event, value = next(events)
            if key == "inputs":
                fields[key] = None if event == "null" else {}
                input_files = _count_inputs(events, event)
            elif key in _TASK_SCALARS:
                if event in _OPEN:
                    types = COMPONENTS["TaskConfig"]["properties"][key]["type"]
                    expected = " or ".join([types] if isinstance(types, str) else types)
                    raise ValidationError(
                        f"body.{key}: expected {expected}, got {_event_kind(event)}"
                    )
                fields[key] = value
            elif event in _OPEN:
                _skip(events)
        for _ in events:  # trailing content after the object is an error
            pass
    except ijson.JSONError as exc:
        if first is None:
            raise ValidationError("body: a JSON body is required") from None
        raise ValidationError(f"body: malformed JSON ({_parser_message(exc)})") from None
    except UnicodeDecodeError:
        raise ValidationError("body: not UTF-8") from None
    return parse_task(fields, input_files=input_files)


def _count_inputs(events: Iterator[_Event], event: str) -> int:
    """Walk the value of ``inputs`` (its first event given); return the fileInputs count."""
    if event == "null":
        return 0
    if event != "start_map":
        raise ValidationError(f"body.inputs: expected object or null, got {_event_kind(event)}")
    files = 0
    for _prefix, inner, kind in events:
        if inner == "end_map":
            return files
        _p, start, _v = next(events)
        if start == "start_array":
            count = _count_items(events)
            if kind == "fileInputs":
                files = count
        elif start in _OPEN:
            _skip(events)
    return files


def _count_items(events: Iterator[_Event]) -> int:
    """Count the items of an array whose ``start_array`` was consumed, skipping their content."""
    count = 0
    for _prefix, event, _value in events:
        if event == "end_array":
            return count
        count += 1
        if event in _OPEN:
            _skip(events)
    return count


def _skip(events: Iterator[_Event]) -> None:
    """Consume a container whose opening event was consumed, up to its closing event."""
    depth = 1
    for _prefix, event, _value in events:
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if depth == 0:
                return


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


def parse_metrics(body: Any) -> cws.TaskMetrics:
    """Build task metrics from a validated TaskMetrics body."""
    validate(body, COMPONENTS["TaskMetrics"])
    return cws.TaskMetrics(
        ram_request=body.get("ramRequest"),
        peak_vmem=body.get("peakVmem"),
        peak_rss=body.get("peakRss"),
        realtime=body.get("realtime"),
    )
