"""The cloud's error tree, translated to JSON responses at the HTTP boundary.

    MailcamError                 (400 bad_request)
    ├── ValidationFailed         (422 invalid_request)
    ├── ImageRejected            (422 / 413 invalid_image, image_too_large)
    ├── NotAuthenticated         (401 not_authenticated)
    ├── Forbidden                (403 forbidden)
    ├── NotFound                 (404 not_found)  -- also "exists but is not yours"
    ├── Conflict                 (409 conflict)
    ├── ClickLimitExceeded       (429 click_limit_exceeded)
    ├── RateLimited              (429 rate_limited)
    └── ServiceUnavailable       (503 unavailable)    -- a remote service we need failed; try again

Every error body is ``{"error": code, "detail": message, ...context}``, an unhandled
exception's 500 included (``internal_error``; the traceback goes to the log, not the client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class MailcamError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.context}


class ValidationFailed(MailcamError):
    status_code = 422
    code = "invalid_request"


class ImageRejected(MailcamError):
    status_code = 422
    code = "invalid_image"


class ImageTooLarge(ImageRejected):
    status_code = 413
    code = "image_too_large"


class NotAuthenticated(MailcamError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(MailcamError):
    status_code = 403
    code = "forbidden"


class NotFound(MailcamError):
    status_code = 404
    code = "not_found"


class Conflict(MailcamError):
    status_code = 409
    code = "conflict"


class ClickLimitExceeded(MailcamError):
    status_code = 429
    code = "click_limit_exceeded"

    def body(self) -> dict[str, Any]:
        # The seed's clients read ``status`` and ``message``; ours read ``error`` and ``detail``.
        return {"status": "error", "message": self.detail, **super().body()}


class RateLimited(MailcamError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(MailcamError):
    status_code = 503
    code = "unavailable"


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def invalid_request_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The 422 body for a request (or an item of a batch) that failed validation: where and why."""
    problems = [{"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")} for err in errors]
    return {"error": "invalid_request", "detail": "the request is not valid", "problems": problems}


INTERNAL_ERROR_BODY = {"error": "internal_error", "detail": "an unexpected error occurred; it has been logged"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MailcamError)
    async def _mailcam_error(_request: Request, exc: MailcamError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if "retry_after" in exc.context:
            headers = {"Retry-After": str(exc.context["retry_after"])}
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(invalid_request_body(exc.errors()), status_code=422)

    @app.exception_handler(Exception)
    async def _unhandled(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises so the traceback is logged.
        return JSONResponse(INTERNAL_ERROR_BODY, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )


VALIDATION_ERROR_SCHEMA = {
    "title": "ValidationErrorBody",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "const": "invalid_request"},
        "detail": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {"type": "string"}}, "msg": {"type": "string"}},
            },
        },
    },
}


# Any operation behind a bearer token may answer these: no or a bad token (401); a token of the
# wrong kind, or an API key whose scope does not allow the call (403); an API key over its rate (429).
_AUTH_ERRORS = {
    "401": "Missing, invalid or expired token",
    "403": "This token may not do this",
    "429": "Too many requests (integration API keys are rate limited)",
}


def document_error_bodies(app: FastAPI) -> None:
    """Make the OpenAPI schema describe the error bodies this app really sends (not FastAPI's default):
    the 422 body, and on every operation behind a token the 401/403/429 it may answer."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            _document_auth_errors(schema)
            _document_no_nul(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_auth_errors(schema: dict[str, Any]) -> None:
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in _AUTH_ERRORS.items():
                responses.setdefault(code, {"description": description, "content": body})


# Request text may not contain NUL (PostgreSQL text cannot hold it); ``Strict`` bodies refuse it
# (cloud.api.schemas) and the document says so on every free-text field of a request body.
NO_NUL_PATTERN = r"^[^\x00]*$"


def _document_no_nul(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    pending = [
        media["schema"]
        for path_item in schema.get("paths", {}).values()
        for operation in path_item.values()
        if isinstance(operation, dict)
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if "schema" in media
    ]
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in components:
                seen.add(name)
                pending.append(components[name])
            continue
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
            node["pattern"] = NO_NUL_PATTERN
        pending.extend(node.get("properties", {}).values())
        pending.extend(node.get("anyOf", []))
        pending.extend(node.get("allOf", []))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                pending.append(node[key])
