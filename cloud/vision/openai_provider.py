"""OpenAI (or any OpenAI-compatible server) as a vision provider.

The official SDK, ``max_retries=0`` (retries are ours, with tenacity, so each
attempt is logged), structured output with a JSON schema, and a tolerant
parser: an answer in a markdown fence or with optional fields missing is
accepted; an unusable one gets one repair turn, then the provider gives up.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from typing import Any, Literal

import openai
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from cloud.vision.base import (
    CATEGORIES,
    AnalyseRequest,
    Answer,
    CallRecord,
    InvalidAnswer,
    ProviderError,
    TransientProviderError,
    VisionResult,
    counts_model,
)
from cloud.vision.config import VisionSettings
from cloud.vision.prep import prepare_jpeg
from cloud.vision.pricing import UnpricedModel, cost_usd, price_for

SYSTEM_PROMPT = (
    "Photo from a camera inside a mailbox. Count the mail by kind (a catalogue counts as magazine, junk "
    "mail as flyer), judge any package's damage, and say if the photo is unusable instead of guessing. "
    "confidence: probability that mail_detected is right. description: one short sentence naming what "
    "is there. Reply with the JSON object only."
)
USER_PROMPT = "Analyse this mailbox photo."
# With a calibrated device the model sees the box empty first: "what changed?" is an easier and
# surer question than "what is this?" (a poster glued inside, a brown floor, a drain hole).
REFERENCE_PROMPT = (
    "The first image is this same mailbox when it was empty. The second is the new photo: analyse the "
    "second one. Anything also in the first image belongs to the box, and differences in light, colour "
    "or a small camera shift are not mail."
)
REPAIR_PROMPT = (
    "That reply could not be used ({problem}). Reply again with only the JSON object, "
    "with every field of the schema."
)

# Kept small on purpose: with structured output the schema is part of every prompt (tokens = money).
# package_present is derived from counts.package, items[] from the counts (the model may still send items).
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "mail_detected", "confidence", "description", "counts",
        "package_damage", "package_damage_confidence", "image_quality",
    ],
    "properties": {
        "mail_detected": {"type": "boolean"},
        "confidence": {"type": "number"},
        "description": {"type": "string"},
        "counts": {
            "type": "object",
            "additionalProperties": False,
            "required": list(CATEGORIES),
            "properties": {name: {"type": "integer"} for name in CATEGORIES},
        },
        "package_damage": {"type": "string", "enum": ["none", "minor", "moderate", "severe"]},
        "package_damage_confidence": {"type": "number"},
        "image_quality": {"type": "string", "enum": ["ok", "too_dark", "blurry", "obstructed"]},
    },
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "mailbox_analysis", "strict": True, "schema": RESPONSE_SCHEMA},
}


class _Item(BaseModel):
    type: str = "other"
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"description": value} if isinstance(value, str) else value


_Counts = counts_model("_Counts")


class ModelAnswer(BaseModel):
    """What we accept: the two seed fields are required, the rest have safe defaults."""

    mail_detected: bool
    confidence: float = Field(ge=0, le=1)
    description: str = ""
    items: list[_Item] = Field(default_factory=list)
    counts: _Counts = Field(default_factory=_Counts)
    package_present: bool | None = None
    package_damage: Literal["none", "minor", "moderate", "severe"] = "none"
    package_damage_confidence: float = Field(default=0.0, ge=0, le=1)
    image_quality: Literal["ok", "too_dark", "blurry", "obstructed"] = "ok"

    @field_validator("package_damage", "image_quality", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return value.strip().lower().replace(" ", "_") if isinstance(value, str) else value

    def to_result(self) -> VisionResult:
        counts = self.counts.model_dump()
        package = self.package_present if self.package_present is not None else counts["package"] > 0
        return VisionResult(
            mail_detected=self.mail_detected,
            confidence=self.confidence,
            description=self.description,
            items=_typed_items(self.items, counts),
            categories=counts,
            package_present=package,
            package_damage=self.package_damage if package else "none",
            package_damage_confidence=self.package_damage_confidence if package else 0.0,
            image_quality=self.image_quality,
        )


def _typed_items(items: list[_Item], counts: dict[str, int]) -> list[dict[str, str]]:
    """Items as ``{type, description}``: the model's if it sent any, else one per counted piece."""
    kinds = [name for name in CATEGORIES for _ in range(counts[name])]
    if not items:
        return [{"type": kind, "description": kind} for kind in kinds]
    out = []
    for i, item in enumerate(items):
        kind = item.type
        if kind == "other" and i < len(kinds):
            kind = kinds[i]
        out.append({"type": kind, "description": item.description})
    return out


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def parse_answer(text: str | None) -> VisionResult:
    """The model's text as a result; raises ValueError saying what is wrong."""
    if not text or not text.strip():
        raise ValueError("empty reply")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from exc
    try:
        return ModelAnswer.model_validate(data).to_result()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"fields do not match the schema: {problems}") from exc


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: VisionSettings, *, client: openai.OpenAI | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            s = self.settings
            key = s.openai_api_key or os.environ.get("OPENAI_API_KEY") or ("local" if s.openai_base_url else None)
            if key is None:
                raise ProviderError("no OpenAI API key configured (MAILCAM_VISION__OPENAI_API_KEY)")
            self._client = openai.OpenAI(
                api_key=key, base_url=s.openai_base_url, timeout=s.openai_timeout_s, max_retries=0
            )
        return self._client

    def analyse(self, request: AnalyseRequest) -> Answer:
        s = self.settings
        model = request.model or s.openai_model
        try:
            price_for(s, model)  # no price, no call: an unknown model is never spent on as if free
        except UnpricedModel as exc:
            raise ProviderError(str(exc)) from exc
        detail = request.detail or s.openai_detail
        long_side = s.low_detail_long_side if detail == "low" else s.high_detail_long_side
        jpeg = prepare_jpeg(request.image, long_side=long_side, quality=s.jpeg_quality)
        content: list[dict[str, Any]] = [{"type": "text", "text": USER_PROMPT}]
        if request.references:
            empty = prepare_jpeg(request.references[0].image_jpeg, long_side=long_side, quality=s.jpeg_quality)
            content = [{"type": "text", "text": REFERENCE_PROMPT}, _image_part(empty, detail)]
        content.append(_image_part(jpeg, detail))
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": content},
        ]
        calls: list[CallRecord] = []
        text, served_model = self._call(model, detail, messages, calls)
        try:
            return Answer(parse_answer(text), model=served_model, calls=calls)
        except ValueError as problem:
            first_problem = str(problem)
        messages += [
            {"role": "assistant", "content": text or ""},
            {"role": "user", "content": REPAIR_PROMPT.format(problem=first_problem)},
        ]
        text, served_model = self._call(model, detail, messages, calls)
        try:
            return Answer(parse_answer(text), model=served_model, calls=calls)
        except ValueError as problem:
            calls[-1].status = "error"
            calls[-1].error = f"unusable answer after repair: {problem}"
            raise InvalidAnswer(f"unusable answer after one repair: {problem}", calls=calls) from None

    def _call(
        self, model: str, detail: str, messages: list[dict[str, Any]], calls: list[CallRecord]
    ) -> tuple[str | None, str]:
        record = CallRecord(provider=self.name, model=model, detail=detail)
        calls.append(record)
        extra: dict[str, Any] = {"response_format": RESPONSE_FORMAT} if self.settings.openai_json_schema else {}
        started = time.monotonic()
        try:
            response = self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.settings.openai_max_tokens,
                temperature=0,
                **extra,
            )
        except openai.OpenAIError as exc:
            record.latency_ms = round((time.monotonic() - started) * 1000)
            record.status = "error"
            raise _translate(exc, record, calls) from exc
        except ProviderError as exc:  # no key configured
            record.status = "error"
            record.error = str(exc)
            raise ProviderError(str(exc), calls=calls) from exc
        record.latency_ms = round((time.monotonic() - started) * 1000)
        if response.usage is not None:
            record.prompt_tokens = response.usage.prompt_tokens or 0
            record.completion_tokens = response.usage.completion_tokens or 0
        record.cost_usd = cost_usd(self.settings, model, record.prompt_tokens, record.completion_tokens)
        if not response.choices:
            record.status = "error"
            record.error = "no choices in the response"
            raise InvalidAnswer("the model returned no choices", calls=calls)
        message = response.choices[0].message
        if getattr(message, "refusal", None):
            record.status = "error"
            record.error = f"refused: {message.refusal}"[:500]
            raise InvalidAnswer("the model refused to answer", calls=calls)
        return message.content, response.model or model


def _image_part(jpeg: bytes, detail: str) -> dict[str, Any]:
    return {"type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode(), "detail": detail}}


def _translate(exc: openai.OpenAIError, record: CallRecord, calls: list[CallRecord]) -> ProviderError:
    """SDK errors → ours: timeouts, connection errors, 408/409/429 and 5xx are transient."""
    if isinstance(exc, openai.APITimeoutError):
        record.error = "timeout"
        return TransientProviderError("the model call timed out", calls=calls)
    if isinstance(exc, openai.APIConnectionError):
        record.error = f"connection error: {exc}"[:500]
        return TransientProviderError("could not reach the model server", calls=calls)
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        record.error = f"HTTP {code}: {exc.message}"[:500]
        if code in (408, 409, 429) or code >= 500:
            error = TransientProviderError(f"model server answered HTTP {code}", calls=calls)
            error.retry_after = _retry_after(exc)
            return error
        return ProviderError(f"model server refused the request: HTTP {code}", calls=calls)
    record.error = f"{type(exc).__name__}: {exc}"[:500]
    return ProviderError(f"model call failed: {type(exc).__name__}", calls=calls)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
