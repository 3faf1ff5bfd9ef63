"""The edge serves the dashboard as plain files under a strict CSP, plus the one setting the page needs."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings

pytestmark = pytest.mark.stack

FILES = Path(__file__).resolve().parents[2] / "api_edge" / "dashboard"
# Any of these would let data become markup or code; the dashboard builds DOM with textContent only.
UNSAFE = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")


class InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        if tag == "style" or "style" in names:
            self.inline.append(f"inline style on <{tag}>")
        self.inline.extend(f"{name} handler on <{tag}>" for name in names if name.startswith("on"))


async def test_dashboard_files_carry_a_strict_csp(edge: httpx.AsyncClient, stack: Settings) -> None:
    for path in ("/dashboard/", "/dashboard/main.js", "/dashboard/style.css", "/dashboard/config.json"):
        response = await edge.get(path, headers={"Authorization": ""})  # public: the files hold no data
        assert response.status_code == 200, path
        csp = dict(
            part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";")
        )
        assert csp["default-src"] == "'none'"
        assert csp["script-src"] == "'self'", "no inline or foreign script"
        assert csp["style-src"] == "'self'"
        assert csp["frame-ancestors"] == "'none'"
        live_origin = re.match(r"wss?://[^/]+", stack.live_public_url)
        assert live_origin is not None
        assert csp["connect-src"] == f"'self' {live_origin.group(0)}", "only the API and the live relay"
        assert response.headers["x-content-type-options"] == "nosniff"
    redirect = await edge.get("/dashboard", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/dashboard/"
    assert (await edge.get("/dashboard/no-such.js")).status_code == 404


async def test_config_names_the_live_relay_from_settings(edge: httpx.AsyncClient, stack: Settings) -> None:
    config = (await edge.get("/dashboard/config.json")).json()
    assert config == {"live_url": stack.live_public_url, "api_base": ""}


def test_no_inline_code_and_no_markup_from_strings() -> None:
    finder = InlineFinder()
    finder.feed((FILES / "index.html").read_text(encoding="utf-8"))
    assert not finder.inline, finder.inline
    scripts = sorted(FILES.glob("*.js"))
    assert len(scripts) >= 5
    offenders = [f"{p.name}: {m.group(0)}" for p in scripts for m in UNSAFE.finditer(p.read_text("utf-8"))]
    assert not offenders, offenders
