"""The console's files without a browser: shipped in the wheel, served under a strict
Content-Security-Policy, and written so that the policy blocks nothing of ours."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import falcon.testing

from api.resources.console import CSP, STATIC

ROOT = Path(__file__).resolve().parent.parent


def test_every_static_file_is_package_data() -> None:
    """`pip install .` (not only an editable install) ships every file the console serves."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["api.resources.console"]
    package = STATIC.parent
    files = [str(path.relative_to(package)) for path in STATIC.rglob("*") if path.is_file()]
    assert {"static/index.html", "static/app.js", "static/console.css",
            "static/uplot/uPlot.iife.min.js", "static/uplot/uPlot.min.css",
            "static/uplot/LICENSE"} <= set(files)
    shipped = {str(path.relative_to(package)) for pattern in patterns
               for path in package.glob(pattern) if path.is_file()}
    assert sorted(set(files) - shipped) == []


def test_pages_and_files_carry_the_policy(client: falcon.testing.TestClient) -> None:
    uuid = "0" * 32
    for path in ("/console/", f"/console/customers/{uuid}/", f"/console/project-credits/{uuid}/",
                 "/console/periods/", "/console/static/app.js",
                 "/console/static/uplot/uPlot.iife.min.js"):
        result = client.simulate_get(path)
        assert result.status_code == 200, path
        assert result.headers["content-security-policy"] == CSP
        assert result.headers["x-content-type-options"] == "nosniff"
    assert "connect-src 'self'" in CSP and "script-src 'self';" in CSP
    assert "unsafe" not in CSP
    deep = client.simulate_get(f"/console/customers/{uuid}/").text
    assert 'src="../../static/app.js"' in deep  # relative: works under a path prefix
    assert client.simulate_get("/console/customers/not-a-uuid/").status_code == 404


def test_no_inline_script_style_or_handler() -> None:
    page = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert re.findall(r"\sstyle=|\son\w+=|<style", page) == []
    script = (STATIC / "app.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "eval(" not in script and "new Function" not in script
