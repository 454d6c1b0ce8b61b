"""The HTML report: self-contained, and it renders in headless Chromium (Debian's chromium) with the
expected sections and no console messages; a screenshot is taken."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile

import pytest

import huntgen
from conftest import run_cli
from pyhunt.hunts import HUNTS
from pyhunt.hunts.report import SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_NO_CHROMIUM = "needs Debian's chromium (apt-get install -y chromium)"
# In CI (.ci/run installs chromium) a missing browser fails the test instead of skipping it.
needs_chromium = (pytest.mark.skipif(CHROMIUM is None, reason=_NO_CHROMIUM)
                  if os.environ.get("CI", "").lower() != "true" or CHROMIUM is not None
                  else pytest.mark.usefixtures("_chromium_required"))


@pytest.fixture
def _chromium_required():
    pytest.fail(f"the report tests cannot run in CI: {_NO_CHROMIUM}", pytrace=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    data = huntgen.planted_data(tmp_path_factory.mktemp("report-data"))
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = run_cli("report", "--input", str(data["ecs"]), str(data["dns"]), "-o", str(out), "--title", "planted <test>")
    assert r.returncode == 0, r.stderr.decode()
    assert "findings" in r.stderr.decode()
    return out


def _browser_env() -> dict[str, str]:
    """The environment without the sanitizer runtimes that .ci/sanitize.sh preloads for pyhunt's
    own processes: Chromium is not ours, and it hangs with libasan forced into it."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}


def chromium(url: str, *args: str, timeout: float = 90) -> tuple[str, str]:
    """(stdout, stderr) of one headless Chromium run; its profile is a fresh temporary directory."""
    profile = tempfile.mkdtemp(prefix="pyhunt-chromium-")
    try:
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, url],
                           capture_output=True, timeout=timeout, text=True, errors="replace", env=_browser_env())
        return r.stdout, r.stderr
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_messages(stderr: str) -> list[str]:
    """Console output and uncaught errors of the page, as Chromium logs them with --enable-logging."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def test_report_is_self_contained(report):
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page), "an external asset"
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    for sid in SECTIONS + tuple(f"hunt-{n}" for n in HUNTS):
        assert f'id="{sid}"' in page, sid
    assert "planted &lt;test&gt;" in page and "<test>" not in page  # escaped
    for key in huntgen.PLANTED.values():
        assert key.replace(">", "&gt;") in page, key
    assert page.count("<svg") >= 3 + 2 * 1  # overview charts and at least one beacon's two plots


@needs_chromium
def test_report_renders_in_chromium(report, tmp_path):
    url = report.as_uri()
    dom, err = chromium(url, "--dump-dom", "--virtual-time-budget=2000")
    assert 'data-ready="1"' in dom, "the inline script did not run:\n" + err[-2000:]
    for sid in SECTIONS + tuple(f"hunt-{n}" for n in HUNTS):
        assert f'id="{sid}"' in dom, sid
    assert console_messages(err) == []
    shot = tmp_path / "report.png"
    _, err = chromium(url, f"--screenshot={shot}", "--window-size=1400,2400", "--hide-scrollbars")
    assert shot.exists(), err[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (1400, 2400) and len(png) > 50_000  # a page with content, not a blank one
    assert console_messages(err) == []
    keep = os.environ.get("PYHUNT_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


@needs_chromium
def test_console_errors_are_detected(tmp_path):
    """The check above can fail: a page with an error and an uncaught exception is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("bad thing");'
                   'throw new Error("boom")</script></body></html>')
    _, err = chromium(bad.as_uri(), "--dump-dom")
    msgs = console_messages(err)
    assert any("bad thing" in m for m in msgs) and any("Uncaught Error: boom" in m for m in msgs), err[-2000:]
