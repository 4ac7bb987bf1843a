"""Request bodies checked against the published OpenAPI document: what passes, what each
problem is called, and the streamed task reader. Pure: no loop, no server."""

from __future__ import annotations

import io

import pytest

from scheduler.rest import api, openapi, schemas

E = "/v1/scheduler/{execution}"


def compiled(max_items: int = 100) -> dict[tuple[str, str], schemas.BodySchema]:
    document = openapi.build(api.ROUTES, max_items=max_items, version="test", auth=False)
    return schemas.body_schemas(document)


def problem(method: str, path: str, raw: bytes, *, max_items: int = 100) -> str:
    with pytest.raises(schemas.ValidationError) as caught:
        compiled(max_items)[(method, path)].check(schemas.load_json(raw))
    return str(caught.value)


def test_every_route_with_a_body_is_checked_against_its_documented_schema() -> None:
    document = openapi.build(api.ROUTES, max_items=100, version="test", auth=False)
    checked = schemas.body_schemas(document)
    with_body = {(r.method, r.path) for r in api.ROUTES if r.body is not None}
    assert set(checked) == with_body
    for (method, path), body_schema in checked.items():
        operation = document["paths"][path][method.lower()]
        assert body_schema.pointer.startswith("#/paths/")
        assert "schema" in operation["requestBody"]["content"]["application/json"]


@pytest.mark.parametrize(
    ("method", "path", "raw", "message"),
    [
        ("POST", E, b'{"strategy": ""}', "body.strategy: must not be empty"),
        (
            "POST",
            E,
            b'{"strategy": "x", "maxMemory": 0}',
            "body.maxMemory: 0 is below the minimum 1",
        ),
        ("POST", E, b'{"strategy": "x", "namespace": "A"}', "body.namespace: 'A' does not match"),
        ("POST", E, b"[]", "body: expected object, got array"),
        (
            "POST",
            E + "/DAG/vertices",
            b'[{"uid": 1, "type": "NODE"}, {"uid": "1", "type": "NODE"}]',
            "body[1].uid: expected integer, got string",
        ),
        ("POST", E + "/DAG/vertices", b'[{"uid": 1}]', "body[0]: missing required field 'type'"),
        (
            "POST",
            E + "/DAG/vertices",
            b'[{"uid": 1, "type": "BOX"}]',
            "body[0].type: 'BOX' is not one of PROCESS, OPERATOR, ORIGIN, NODE",
        ),
        (
            "POST",
            E + "/DAG/edges",
            b'[{"uid": 1, "from": "a"}]',
            "body[0].from: expected integer or null",
        ),
        ("DELETE", E + "/DAG/edges", b"[1, 2, 3]", "body: more than 2 items"),
        ("PUT", E + "/endBatch", b"-1", "body: -1 is below the minimum 0"),
        ("PUT", E + "/endBatch", b"1.5", "body: expected integer, got number"),
        (
            "POST",
            E + "/metrics/task/{id}",
            b'{"realtime": 1.5}',
            "body.realtime: expected integer or null, got number",
        ),
        (
            "POST",
            E + "/metrics/task/{id}",
            b'{"peakRss": 99999999999999999999}',
            "body.peakRss: 99999999999999999999 is above the maximum 9223372036854775807",
        ),
    ],
)
def test_each_problem_names_the_offending_field(method, path, raw, message) -> None:
    assert problem(method, path, raw, max_items=2).startswith(message)


def test_a_pattern_must_match_the_whole_name_trailing_newline_included() -> None:
    body = b'{"task": "A", "runName": "p1\\n"}'
    fields = schemas.read_task(io.BytesIO(body)).fields
    with pytest.raises(schemas.ValidationError, match=r"^body\.runName: 'p1\\n' does not match"):
        compiled()[("POST", E + "/task/{id}")].check(fields)


def test_integral_numbers_are_integers_and_decode_as_int() -> None:
    body = schemas.load_json(b'[{"uid": 2.0, "type": "NODE"}, {"uid": 3, "type": "NODE"}]')
    compiled()[("POST", E + "/DAG/vertices")].check(body)
    assert [v.uid for v in schemas.parse_vertices(body)] == [2, 3]
    assert all(type(v.uid) is int for v in schemas.parse_vertices(body))


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"1e400", "out of range"),
        (b"[NaN]", "NaN is not valid JSON"),
        (b"9" * 5000, "malformed JSON"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"", "a JSON body is required"),
    ],
)
def test_bodies_that_are_not_plain_json_are_refused_by_the_decoder(raw, needle) -> None:
    with pytest.raises(schemas.ValidationError, match=needle):
        schemas.load_json(raw)


def test_read_task_keeps_the_scalars_and_counts_the_input_files() -> None:
    raw = (
        b'{"task": "A", "runName": "p1", "inputSize": 7.0, "unknown": {"deep": [1, [2]]},'
        b' "inputs": {"fileInputs": [{"name": "a"}, {"name": "b"}], "stringInputs": ["s"]}}'
    )
    task = schemas.read_task(io.BytesIO(raw))
    assert task.input_files == 2
    assert task.fields == {"task": "A", "runName": "p1", "inputSize": 7, "inputs": {}}
    compiled()[("POST", E + "/task/{id}")].check(task.fields)
    registration = schemas.parse_task(task)
    assert (registration.process, registration.pod_name, registration.input_size) == ("A", "p1", 7)
    assert registration.input_files == 2


@pytest.mark.parametrize(
    ("raw", "kept", "message"),
    [
        (b'"cpus": [1, [2]]', {"cpus": []}, "body.cpus: expected number or null, got array"),
        (b'"name": {"a": 1}', {"name": {}}, "body.name: expected string or null, got object"),
        (b'"inputs": "x"', {"inputs": "x"}, "body.inputs: expected object or null, got string"),
    ],
)
def test_read_task_keeps_a_wrong_kind_small_for_the_schema_to_name(raw, kept, message) -> None:
    task = schemas.read_task(io.BytesIO(b'{"task": "A", "runName": "p", ' + raw + b"}"))
    assert task.fields == {"task": "A", "runName": "p", **kept}
    with pytest.raises(schemas.ValidationError) as caught:
        compiled()[("POST", E + "/task/{id}")].check(task.fields)
    assert str(caught.value) == message


def test_read_task_counts_only_the_items_of_the_file_inputs_array() -> None:
    cases = {
        b'{"inputs": {"fileInputs": [[1], {"item": 2}, 3]}}': 3,
        b'{"inputs": {"fileInputs": {"item": 1}}}': 0,
        b'{"inputs.fileInputs": [1, 2]}': 0,
        b'{"inputs": {"fileInputs": [1, 2], "fileInputs": [3]}}': 1,
        b'{"inputs": null}': 0,
    }
    counted = {raw: schemas.read_task(io.BytesIO(raw)).input_files for raw in cases}
    assert counted == cases


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "a JSON body is required"),
        (b"[1]", "body: expected object, got array"),
        (b'{"task": "A"', "malformed JSON"),
        (b'{"task": "A"} 1', "malformed JSON"),
    ],
)
def test_read_task_refuses_what_is_not_one_json_object(raw, needle) -> None:
    with pytest.raises(schemas.ValidationError, match=needle):
        schemas.read_task(io.BytesIO(raw))
