"""Every error leaves as RFC 9457 problem+json, rendered here and nowhere else."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("invmon.edge")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error with its HTTP status; raise it from any endpoint."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type_ = type_
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    instance: str,
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "instance": instance}
    if detail:
        body["detail"] = detail
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def render(problem: Problem, instance: str) -> JSONResponse:
    return problem_response(
        instance,
        problem.status,
        problem.title,
        problem.detail,
        type_=problem.type_,
        headers=problem.headers,
        extra=problem.extra,
    )


def _message(error: dict[str, Any]) -> str:
    """The error's message; a body that is not JSON also says where and why (FastAPI keeps it in ctx)."""
    message = str(error.get("msg", ""))
    cause = (error.get("ctx") or {}).get("error")
    return f"{message}: {cause}" if error.get("type") == "json_invalid" and cause else message


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return render(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem_response(
            request.url.path,
            422,
            "Request validation failed",
            f"{len(errors)} error(s) in the request",
            type_="/problems/validation",
            extra={"errors": errors},
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        return problem_response(request.url.path, exc.status_code, str(exc.detail), headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(request.url.path, 500, "Internal Server Error")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class ProblemDocument(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": ProblemDocument.model_json_schema()}},
    }


# Declared on every router: the answers any authenticated endpoint may give besides its own.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Malformed request."),
    401: _problem("Missing or invalid credentials."),
    403: _problem("The caller's role does not allow this."),
    404: _problem("No such resource."),
    409: _problem("A request with this Idempotency-Key is still in progress."),
    413: _problem("Request too large."),
    422: _problem("Invalid request; nothing was published."),
    429: _problem("Rate limit exceeded; see Retry-After."),
    500: _problem("Unexpected error (no internals are shown)."),
    503: _problem("A dependency (the broker; Redis for an Idempotency-Key) is unavailable; see Retry-After."),
}
