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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MailcamError)
    async def _mailcam_error(_request: Request, exc: MailcamError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if "retry_after" in exc.context:
            headers = {"Retry-After": str(exc.context["retry_after"])}
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")} for err in exc.errors()
        ]
        return JSONResponse(
            {"error": "invalid_request", "detail": "the request is not valid", "problems": problems},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unhandled(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises so the traceback is logged.
        return JSONResponse(
            {"error": "internal_error", "detail": "an unexpected error occurred; it has been logged"},
            status_code=500,
        )

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


def document_error_bodies(app: FastAPI) -> None:
    """Make the OpenAPI schema describe the 422 body this app really sends (not FastAPI's default)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
