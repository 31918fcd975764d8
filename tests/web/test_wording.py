"""The dashboard's wording (cloud/web/static/js/format.js), run under Node: fast checks of every case."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cloud.web.routes import STATIC_DIR

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

EMPTY_COUNTS = {"letter": 0, "package": 0, "magazine": 0, "flyer": 0, "postcard": 0}
ANALYSES = {
    "counts": {"status": "done", "mail_detected": True, "categories": {**EMPTY_COUNTS, "letter": 2, "package": 1}},
    "one_letter": {"status": "done", "mail_detected": True, "categories": {**EMPTY_COUNTS, "letter": 1}},
    "items_only": {"status": "done", "mail_detected": True, "categories": None,
                   "items": [{"type": "flyer"}, {"type": "flyer"}, {"type": "postcard"}]},
    "package_flag_only": {"status": "done", "mail_detected": True, "categories": EMPTY_COUNTS, "package_present": True},
    "no_detail": {"status": "done", "mail_detected": True, "categories": EMPTY_COUNTS},
    "empty": {"status": "done", "mail_detected": False, "image_quality": "ok"},
    "dark": {"status": "done", "mail_detected": False, "image_quality": "too_dark"},
    "blurry": {"status": "done", "mail_detected": False, "image_quality": "blurry"},
    "queued": {"status": "queued"},
    "running": {"status": "running"},
    "failed": {"status": "failed", "error": "timeout"},
    "damaged": {"status": "done", "mail_detected": True, "categories": {**EMPTY_COUNTS, "package": 1},
                "package_present": True, "package_damage": "severe", "description": "A crushed box"},
}

SCRIPT = """
import * as f from "%s";
const analyses = %s;
const now = Date.parse("2026-03-10T12:00:00Z");
const out = {};
for (const [name, a] of Object.entries(analyses)) out[name] = f.describeAnalysis(a);
out.none = f.describeAnalysis(null);
out.ago = ["2026-03-10T11:59:30Z", "2026-03-10T11:55:00Z", "2026-03-10T09:00:00Z", "2026-03-09T10:00:00Z",
           "2026-03-07T12:00:00Z", null].map((t) => f.relativeTime(t, now));
out.moments = [f.localMoment("2026-03-11T00:00:00+01:00", "Europe/Paris", new Date("2026-03-10T22:30:00Z")),
               f.localMoment("2026-03-10T18:05:00Z", "UTC", new Date(now))];
out.clicks = [f.clicksLeft(1, 3), f.clicksLeft(3, 3), f.clicksLeft(5, null)];
out.battery = [f.battery(3.9), f.battery(3.4), f.battery(3.1), f.battery(null)];
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def wording() -> dict:
    module = (STATIC_DIR / "js" / "format.js").as_uri()
    script = SCRIPT % (module, json.dumps(ANALYSES))
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30,
                          env={"TZ": "UTC", "LANG": "en_GB.UTF-8", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("case", "state", "text"),
    [
        ("counts", "mail", "You have mail: 2 letters, 1 package"),
        ("one_letter", "mail", "You have mail: 1 letter"),
        ("items_only", "mail", "You have mail: 2 flyers, 1 postcard"),
        ("package_flag_only", "mail", "You have mail: 1 package"),
        ("no_detail", "mail", "You have mail"),
        ("empty", "empty", "Empty"),
        ("dark", "retake", "Photo too dark — retake"),
        ("blurry", "retake", "Photo blurry — retake"),
        ("queued", "pending", "Analysing…"),
        ("running", "pending", "Analysing…"),
        ("failed", "failed", "Analysis failed — retry"),
        ("none", "none", "Not analysed"),
    ],
)
def test_each_vision_result_has_a_plain_sentence(wording, case, state, text):
    assert wording[case]["state"] == state
    assert wording[case]["text"] == text


def test_a_failure_is_never_worded_as_no_mail(wording):
    assert wording["failed"]["text"] != "Empty" and wording["failed"]["detail"] == "timeout"


def test_a_damaged_package_is_mentioned(wording):
    assert wording["damaged"]["detail"] == "A crushed box The package may be damaged (severe)."


def test_times_read_naturally(wording):
    assert wording["ago"] == ["just now", "5 min ago", "3 h ago", "yesterday", "3 days ago", "never"]
    assert wording["moments"][0] == "tomorrow at 00:00"  # local midnight in the user's zone
    assert wording["moments"][1] == "today at 18:05"


def test_clicks_and_battery(wording):
    assert [c["text"] for c in wording["clicks"]] == [
        "2 of 3 photos left today", "0 of 3 photos left today", "Unlimited photos (Premium)"]
    assert [(b["low"], b["critical"]) for b in wording["battery"]] == [(False, False), (True, False), (True, True),
                                                                         (False, False)]
    assert wording["battery"][0]["text"] == "3.90 V"
