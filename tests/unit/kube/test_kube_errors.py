"""Error classification on Status bodies captured from kube-apiserver 1.36 (and APF shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import urllib3.exceptions
from kubernetes.client import exceptions as k8s_exceptions

from scheduler.kube import errors

CASES = json.loads((Path(__file__).parent / "fixtures" / "status_bodies.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_response_is_classified_by_status_and_reason(case: dict) -> None:
    err = errors.from_response(case["http_status"], case["body"].encode(), case["headers"])
    assert err.kind == case["expect_kind"]
    assert type(err).__name__ == case["expect_class"]
    assert err.http_status == case["http_status"]
    assert err.retry_after == case["expect_retry_after"]
    assert errors.classify(err) == case["expect_kind"]


@pytest.mark.parametrize("case", [c for c in CASES if c["body"].startswith("{")], ids=str)
def test_watch_error_event_status_classifies_like_the_response(case: dict) -> None:
    status = json.loads(case["body"])
    err = errors.from_status(status)
    assert err.kind == case["expect_kind"]
    assert err.http_status == status["code"]


def test_reason_wins_over_status_code() -> None:
    assert errors.kind_for(409, "AlreadyExists") is errors.ApiErrorKind.ALREADY_EXISTS
    assert errors.kind_for(500, "ServerTimeout") is errors.ApiErrorKind.TIMEOUT
    assert errors.kind_for(410, "Expired") is errors.ApiErrorKind.GONE
    assert errors.kind_for(410, "Gone") is errors.ApiErrorKind.GONE
    # Unknown reasons fall back to the status code.
    assert errors.kind_for(409, "SomethingNew") is errors.ApiErrorKind.CONFLICT
    assert errors.kind_for(418) is errors.ApiErrorKind.BAD_REQUEST
    assert errors.kind_for(599) is errors.ApiErrorKind.SERVER_ERROR


def test_message_text_never_changes_the_classification() -> None:
    misleading = {
        "kind": "Status",
        "code": 409,
        "reason": "Conflict",
        "message": "not found; too many requests; expired; already exists",
    }
    assert errors.from_status(misleading).kind is errors.ApiErrorKind.CONFLICT


def test_subclass_hierarchy_supports_except_clauses() -> None:
    exists = errors.from_status({"code": 409, "reason": "AlreadyExists"})
    assert isinstance(exists, errors.ConflictError)
    timeout = errors.from_exception(TimeoutError("timed out"))
    assert isinstance(timeout, errors.ApiConnectionError)
    assert timeout.kind is errors.ApiErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            urllib3.exceptions.MaxRetryError(
                None, "/x", urllib3.exceptions.NewConnectionError(None, "refused")
            ),
            errors.ApiErrorKind.CONNECTION,
        ),
        (
            urllib3.exceptions.MaxRetryError(
                None, "/x", urllib3.exceptions.ConnectTimeoutError("slow")
            ),
            errors.ApiErrorKind.TIMEOUT,
        ),
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "read"), errors.ApiErrorKind.TIMEOUT),
        (urllib3.exceptions.ProtocolError("reset"), errors.ApiErrorKind.CONNECTION),
        (ConnectionResetError(), errors.ApiErrorKind.CONNECTION),
        (k8s_exceptions.ApiException(status=0, reason="SSLError"), errors.ApiErrorKind.CONNECTION),
        (ValueError("not an API error"), errors.ApiErrorKind.OTHER),
    ],
)
def test_transport_failures_are_classified(exc: BaseException, kind: errors.ApiErrorKind) -> None:
    assert errors.classify(exc) is kind


def test_official_client_exception_is_classified_from_its_body() -> None:
    body = CASES[0]["body"]
    exc = k8s_exceptions.ApiException(status=409, reason="Conflict")
    exc.body = body
    exc.headers = {}
    err = errors.from_exception(exc)
    assert isinstance(err, errors.ConflictError)
    assert "already assigned" in err.message


def test_retryable_kinds() -> None:
    assert errors.from_status({"code": 429, "reason": "TooManyRequests"}).retryable
    assert errors.from_status({"code": 503}).retryable
    assert not errors.from_status({"code": 409, "reason": "Conflict"}).retryable
    assert not errors.from_status({"code": 404, "reason": "NotFound"}).retryable


def test_non_json_and_http_date_retry_after_are_tolerated() -> None:
    err = errors.from_response(429, b"<html>slow down</html>", {"Retry-After": "Wed, 21 Oct"})
    assert err.kind is errors.ApiErrorKind.TOO_MANY_REQUESTS
    assert err.retry_after is None
    assert "slow down" in err.message
