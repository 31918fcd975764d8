"""What vision costs per device and month: the seed's way versus mailcam's pipeline.

Simulates a month of N mailboxes (hourly timer wakes, door wakes for deliveries and pick-ups,
daylight and night, the device simulator's synthetic scenes) and runs every capture through the
real ingest and the real analysis pipeline, with the real openai SDK talking to a local
OpenAI-compatible fake that bills tokens the way OpenAI does (85 tokens per image at
``detail: low``, 85 + 170 per 512 px tile at ``high``; text at ~4 characters per token,
the JSON schema included). Three runs:

    seed     every capture sent at detail=high, full size, no cache, no skips (what the seed did)
    mailcam  the default pipeline with provider=openai (gpt-4o, detail=low, 512 px, dedupe,
             unchanged-scene reuse, offline pre-filter, budget)
    offline  the default offline provider: accuracy against the scenes' ground truth

Each device is calibrated first (a photo of its box empty, as the installer's last step): the
offline pre-filter may skip the model only on a calibrated device, and the model is shown that
reference next to every new photo (2 × 85 tokens at detail=low).

    .venv/bin/python bench/ai_cost.py --devices 3 --days 30
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import math
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from cloud import migrate
from cloud.clock import ManualClock
from cloud.context import AppContext
from cloud.events import LogSink
from cloud.models import AIOperation, Analysis, Capture, TriggerType
from cloud.services import accounts, devices, ingest
from cloud.settings import Settings
from cloud.vision import references
from cloud.vision.config import VisionSettings
from cloud.vision.pricing import cost_usd, image_tokens
from cloud.vision.worker import process_pending
from mailcam import scenes

START = datetime(2026, 3, 1, tzinfo=UTC)


# --- the month ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    at: datetime
    device: int
    wake: str  # timer | door
    kind: str  # scene kind rendered
    seed: int
    light: float
    truth_kind: str  # what is really in the box
    night: bool


def _light(at: datetime) -> float | None:
    """Daylight factor, or None at night (the camera has no flash: the frame is dark)."""
    hour = at.hour + at.minute / 60
    if hour < 6.5 or hour >= 20:
        return None
    return round(0.8 + 0.35 * math.sin(math.pi * (hour - 6.5) / 13.5), 2)


def month_of_shots(n_devices: int, days: int, rng: random.Random) -> list[Shot]:
    shots: list[Shot] = []
    for device in range(n_devices):
        empty_seed = 1000 * device
        state = ("empty", empty_seed)
        events: list[tuple[datetime, str, tuple[str, int] | None]] = []
        offset = timedelta(minutes=rng.randint(0, 59))
        for hour in range(days * 24):
            events.append((START + timedelta(hours=hour) + offset, "timer", None))
        for day in range(days):
            date = START + timedelta(days=day)
            if date.weekday() < 6 and rng.random() < 0.8:  # post Monday to Saturday
                at = date + timedelta(hours=rng.uniform(10, 15))
                kind = rng.choices(["letters", "magazine", "package"], weights=[60, 12, 28])[0]
                events.append((at, "delivery", (kind, rng.randint(1, 10**6))))
            if rng.random() < 0.85:  # the owner empties the box in the evening
                events.append((date + timedelta(hours=rng.uniform(17, 19.9)), "pickup", None))
        for at, what, new in sorted(events, key=lambda e: e[0]):
            wake = "timer"
            if what == "delivery":
                assert new is not None
                # A parcel on top of letters is "package"; more letters on letters stay letters.
                if state[0] == "package" and new[0] != "package":
                    new = state
                state, wake = new, "door"
            elif what == "pickup":
                if state[0] == "empty":
                    continue
                state, wake = ("empty", empty_seed), "door"
            light = _light(at)
            night = light is None
            # Light never repeats exactly from one photo to the next (clouds, sensor): a small jitter.
            jitter = round(rng.uniform(-0.03, 0.03), 3)
            if night and state[0] == "empty":
                kind, level = "dark", 1.0 + jitter
            else:
                kind, level = state[0], 0.12 + jitter / 4 if light is None else light + jitter
            shots.append(Shot(at, device, wake, kind, state[1], level, state[0], night))
    return sorted(shots, key=lambda s: (s.at, s.device))


@functools.lru_cache(maxsize=4096)
def render(kind: str, seed: int, light: float) -> bytes:
    return scenes.render(kind, seed, light=light)


# --- a fake OpenAI that bills like OpenAI ------------------------------------------------------


class Oracle:
    """Answers what a good model would: the ground truth of the capture being analysed."""

    def __init__(self) -> None:
        self.truth_kind = "empty"
        self.night = False

    def answer(self) -> dict:
        kind = self.truth_kind
        counts = dict.fromkeys(["letter", "package", "magazine", "flyer", "postcard"], 0)
        if kind == "letters":
            counts["letter"] = 2
        elif kind in ("package", "magazine"):
            counts[kind] = 1
        mail = kind != "empty"
        quality = "too_dark" if self.night else "ok"
        return {
            "mail_detected": mail and not self.night,
            "confidence": 0.5 if self.night else 0.95,
            "description": "Too dark to see." if self.night else ("Mail is in the box." if mail else "Empty."),
            "counts": counts if not self.night else dict.fromkeys(counts, 0),
            "package_present": counts["package"] > 0 and not self.night,
            "package_damage": "none",
            "package_damage_confidence": 0.9 if counts["package"] else 0.0,
            "image_quality": quality,
        }


def _text_tokens(body: dict) -> int:
    chars = 0
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        else:
            chars += sum(len(part.get("text", "")) for part in content if part.get("type") == "text")
        chars += 16  # per-message overhead
    chars += len(json.dumps(body.get("response_format", {})))
    return math.ceil(chars / 4)


def _image_tokens(body: dict) -> int:
    total = 0
    for message in body.get("messages", []):
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    width, height = Image.open(io.BytesIO(data)).size
                    total += image_tokens(body["model"], part["image_url"].get("detail", "auto"), width, height)
    return total


class BillingFake:
    def __init__(self, oracle: Oracle) -> None:
        oracle_ref = oracle

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # header and body go out in separate writes

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                answer = json.dumps(oracle_ref.answer())
                prompt = _text_tokens(body) + _image_tokens(body)
                completion = math.ceil(len(answer) / 4)
                payload = json.dumps({
                    "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer, "refusal": None}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- one run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    captures: int
    ops: list[AIOperation]
    analyses: dict[str, Analysis]  # capture_id -> analysis
    shots: dict[str, Shot]
    capture_ids: dict[int, str]  # capture pk -> capture_id


def run(name: str, vision: dict, shots: list[Shot], n_devices: int, oracle: Oracle, workdir: Path) -> RunResult:
    clock = ManualClock(START - timedelta(days=1))
    settings = Settings(
        environment="test", data_dir=workdir / name, run_workers=False, run_scheduler=False,
        vision=VisionSettings(**vision),
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = AppContext.build(settings, clock=clock)
    ctx.events.sinks[:] = [LogSink()]
    migrate.upgrade(ctx.engine)
    now = clock.now()
    with ctx.sessions() as session:
        owner = accounts.create_user(session, email="bench@example.com", password="bench-password", now=now)
        boxes = []
        for i in range(n_devices):
            device, _, _ = devices.register_device(
                session, serial=f"bench-{i}", installer=owner, now=now, name=None, timezone="UTC", wake_interval_s=3600
            )
            device.owner_id = owner.id
            session.flush()
            # The installer's last step: a photo of the box empty becomes its reference (calibration).
            references.add(session, device, scenes.render("empty", 70_000 + i), "installer", now)
            boxes.append(device)
        session.commit()
    by_capture: dict[str, Shot] = {}
    for n, shot in enumerate(shots):
        clock.set(shot.at)
        capture_id = f"{name}-{n:06d}"
        by_capture[capture_id] = shot
        data = render(shot.kind, shot.seed, shot.light)
        with ctx.sessions() as session:
            ingest.ingest_capture(
                session, ctx, session.merge(boxes[shot.device]),
                ingest.CaptureIn(
                    image_b64=base64.b64encode(data).decode(),
                    trigger_type=TriggerType.AUTOMATIC,
                    battery_voltage=3.9,
                    taken_at=shot.at,
                    capture_id=capture_id,
                ),
            )
            session.commit()
        oracle.truth_kind, oracle.night = shot.truth_kind, shot.night
        process_pending(ctx)
    with ctx.sessions() as session:
        ops = list(session.scalars(select(AIOperation)))
        pairs = session.execute(select(Analysis, Capture).join(Capture, Analysis.capture_pk == Capture.id)).all()
    ctx.engine.dispose()
    analyses = {capture.capture_id: analysis for analysis, capture in pairs}
    capture_ids = {capture.id: capture.capture_id for _, capture in pairs}
    return RunResult(name, len(shots), ops, analyses, by_capture, capture_ids)


# --- reports -----------------------------------------------------------------------------------


def cost_report(result: RunResult, n_devices: int, days: int, vision: VisionSettings) -> dict:
    scale = 1 / n_devices * (30 / days)
    calls = [op for op in result.ops if op.kind == "call" and op.provider != "offline"]
    prompt = sum(op.prompt_tokens for op in calls)
    completion = sum(op.completion_tokens for op in calls)
    kinds = Counter(op.kind for op in result.ops)
    reasons = Counter()
    for op in calls:
        shot = result.shots[result.capture_ids[op.capture_pk]]
        reasons[f"{shot.wake} wake, {shot.truth_kind}{' at night' if shot.night else ''}"] += scale
    return {
        "captures": result.captures * scale,
        "calls": len(calls) * scale,
        "prompt_tokens": prompt * scale,
        "completion_tokens": completion * scale,
        "usd": sum(op.cost_usd for op in calls) * scale,
        "usd_gpt4_vision": cost_usd(vision, "gpt-4-vision-preview", prompt, completion) * scale,
        "cache": kinds["cache"] * scale,
        "unchanged": kinds["unchanged"] * scale,
        "prefilter": kinds["prefilter"] * scale,
        "budget": kinds["budget"] * scale,
        "reasons": reasons,
    }


def _correct(shot: Shot, analysis: Analysis) -> bool:
    # At night either answer is right: "too dark, retake" (honest), or the scene is recognised as
    # unchanged since daylight and the day's answer stands (mail still there, box still empty).
    if shot.night and analysis.image_quality == "too_dark":
        return True
    if analysis.mail_detected != (shot.truth_kind != "empty"):
        return False
    return shot.truth_kind != "package" or bool(analysis.package_present)


def accuracy_report(result: RunResult) -> dict[str, tuple[int, int]]:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for capture_id, shot in result.shots.items():
        analysis = result.analyses[capture_id]
        label = f"{shot.truth_kind}{' (night)' if shot.night else ''}"
        tally[label][0] += _correct(shot, analysis)
        tally[label][1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(tally.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    shots = month_of_shots(args.devices, args.days, rng)
    wakes = Counter(s.wake for s in shots)
    print(f"simulated {args.devices} devices x {args.days} days: {len(shots)} captures "
          f"({wakes['timer']} timer wakes, {wakes['door']} door wakes; "
          f"{sum(s.night for s in shots)} at night)")

    oracle = Oracle()
    fake = BillingFake(oracle)
    common = {"provider": "openai", "openai_base_url": fake.base_url, "openai_api_key": "bench",
              "fallback_provider": "none"}
    configs = {
        "seed (every capture, detail=high, full size)": {
            **common, "openai_detail": "high", "high_detail_long_side": 4096, "dedupe_exact": False,
            "unchanged_phash_distance": -1, "skip_dark_frames": False, "offline_gate_confidence": 1.01,
            "monthly_budget_usd": 1e9,
        },
        "mailcam (defaults, provider=openai)": common,
    }
    reports = {}
    try:
        scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None  # fsyncs are not what is measured
        with tempfile.TemporaryDirectory(prefix="mailcam-bench-", dir=scratch) as tmp:
            for name, vision in configs.items():
                started = time.monotonic()
                result = run(name.split()[0], vision, shots, args.devices, oracle, Path(tmp))
                reports[name] = cost_report(result, args.devices, args.days, VisionSettings(**vision))
                reports[name]["seconds"] = time.monotonic() - started
                if name.startswith("mailcam"):
                    reports[name]["accuracy"] = accuracy_report(result)
            started = time.monotonic()
            offline = run("offline", {}, shots, args.devices, oracle, Path(tmp))
            offline_seconds = time.monotonic() - started
    finally:
        fake.close()

    print("\nPer device-month (gpt-4o list prices from settings):")
    header = f"{'pipeline':46} {'captures':>8} {'calls':>7} {'prompt tok':>10} {'compl tok':>9} {'USD':>8}"
    print(header)
    for name, r in reports.items():
        print(f"{name:46} {r['captures']:8.0f} {r['calls']:7.1f} {r['prompt_tokens']:10.0f} "
              f"{r['completion_tokens']:9.0f} {r['usd']:8.4f}")
    seed_report = reports[next(iter(reports))]
    print(f"  (the seed's token volume at gpt-4-vision-preview prices: ${seed_report['usd_gpt4_vision']:.2f})")
    mc = reports["mailcam (defaults, provider=openai)"]
    print(f"  mailcam skipped per device-month: {mc['cache']:.0f} exact duplicates, {mc['unchanged']:.0f} unchanged "
          f"scenes, {mc['prefilter']:.0f} offline pre-filtered (dark or surely empty), {mc['budget']:.0f} over budget")
    print("  mailcam model calls by capture:", "; ".join(f"{k} {v:.1f}" for k, v in mc["reasons"].most_common()))
    print("  mailcam (openai) decision accuracy by scene:", _fmt(mc["accuracy"]))

    print(f"\nOffline provider over the same month ({offline_seconds:.0f} s):", _fmt(accuracy_report(offline)))
    print("(Accuracy on mailboxes the analyser was never tuned on: bench/vision_accuracy.py.)")
    return 0


def _fmt(acc: dict[str, tuple[int, int]]) -> str:
    return "; ".join(f"{k} {ok}/{n} ({ok / n:.1%})" for k, (ok, n) in acc.items())


if __name__ == "__main__":
    sys.exit(main())
