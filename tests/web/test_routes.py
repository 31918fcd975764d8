"""The dashboard's files are served by the cloud app, next to an untouched /api."""

from __future__ import annotations

import re

from cloud.web.routes import STATIC_DIR


def test_root_serves_the_dashboard_page_with_a_strict_content_security_policy(api):
    r = api.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/app.js">' in r.text
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "img-src 'self' blob:" in policy
    assert "http" not in r.text.replace("http-equiv", "")  # nothing fetched from a CDN


def test_static_assets_are_served_with_their_types_and_revalidated(api):
    js = api.get("/static/js/app.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert js.headers["cache-control"] == "no-cache"
    assert api.get("/static/style.css").headers["content-type"].startswith("text/css")
    missing = api.get("/static/nope.js")
    assert missing.status_code == 404
    assert api.get("/static/../routes.py").status_code == 404


def test_api_routes_and_errors_are_unchanged(api):
    r = api.get("/api/devices/")
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"
    assert "/" not in api.get("/openapi.json").json()["paths"]  # the page is not an API operation


def test_every_module_import_resolves_to_a_shipped_file():
    """A typo in an import path would only show as a blank page in the browser."""
    for module in STATIC_DIR.rglob("*.js"):
        for target in re.findall(r'from "(\.[^"]+)"', module.read_text()):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"
