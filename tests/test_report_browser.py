"""The lecture report in a real browser: headless Chromium over the DevTools protocol.

Chromium is driven through ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON messages), so no websocket library and no network port is
needed. The test generates a quick digits report with a few sections, opens it,
and checks that every image decoded (``naturalWidth > 0``), that nothing was
logged as an error, that the table of contents links to every section, and that
the analysis sections put our number next to the published one. A negative
control proves the checks can fail. Skips (with the reason) when no Chromium is
installed; ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SECTIONS = ["curves", "cross_sections", "same_norm", "generative"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-pipe"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, exe: str, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies and events on fd 4.
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_chrome_r, 3), os.dup2(from_chrome_w, 4)),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                    raise RuntimeError(f"Chromium closed the debugging pipe: {err}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        att = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                        session=False)
        self.session = att["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                        for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def screenshot(self, path: Path) -> bytes:
        import base64

        data = base64.b64decode(self.send("Page.captureScreenshot",
                                          {"format": "png", "captureBeyondViewport": True})["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


IMAGES_JS = """[...document.images].map(i => ({src: i.src.slice(0, 30), alt: i.alt,
  complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"""

STRUCTURE_JS = """(() => {
  const toc = [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'));
  const sections = [...document.querySelectorAll('section')].map(s => ({
    id: s.id,
    paragraphs: [...s.querySelectorAll('p')].map(p => p.innerText.trim()).filter(t => t.length > 0
      && !t.startsWith('computed in')),
    ours: s.querySelectorAll('tr.ours').length,
    published: [...s.querySelectorAll('td')].filter(td => /published/i.test(td.innerText)).length,
    images: s.querySelectorAll('img').length,
  }));
  return {toc, sections, title: document.title};
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (install Debian's `chromium`, as .ci/run does, "
                    "to run the browser checks of the report)")
    b = Browser(exe, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, make_cli_env) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    proc = subprocess.run(
        [sys.executable, "-m", "advlab", "lecture", "--quick", "--dataset", "digits",
         "--sections", ",".join(SECTIONS), "--out", str(tmp / "out")],
        env=make_cli_env(tmp), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "out" / "index.html"


def test_checks_catch_a_broken_image_and_a_console_error(browser: Browser, tmp_path: Path):
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><title>x</title><img alt='bad' src='data:image/png;base64,AAAA'>"
                    "<script>console.error('boom')</script>")
    browser.open(page.as_uri())
    imgs = browser.evaluate(IMAGES_JS)
    assert imgs == [{"src": "data:image/png;base64,AAAA", "alt": "bad", "complete": True,
                     "w": 0, "h": 0}]
    assert any("boom" in e for e in browser.errors())


def test_report_renders_in_chromium(browser: Browser, report: Path, tmp_path: Path):
    browser.open(report.resolve().as_uri())
    imgs = browser.evaluate(IMAGES_JS)
    assert len(imgs) >= len(SECTIONS)
    broken = [i for i in imgs if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert browser.errors() == []

    info = browser.evaluate(STRUCTURE_JS)
    ids = [s["id"] for s in info["sections"]]
    assert sorted(ids) == sorted(SECTIONS)
    assert info["toc"] == [f"#{i}" for i in ids]  # a table of contents entry per section, in order
    for s in info["sections"]:
        assert s["images"] >= 1, s["id"]
        words = sum(len(p.split()) for p in s["paragraphs"])
        assert words >= 40, f"section {s['id']} explains too little ({words} words)"
        if s["id"] != "curves":  # the analysis sections: our number next to the published one
            assert s["ours"] >= 1 and s["published"] >= 1, s["id"]

    shot = browser.screenshot(tmp_path / "report.png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000


PHOTO_SECTIONS = ["photo_panda", "photo_attacks", "photo_class_direction", "photo_cross_section",
                  "photo_decision_map", "photo_noise", "photo_physical"]


def test_photo_sections_render_in_chromium(browser: Browser, tmp_path: Path, digits_train,  # type: ignore[no-untyped-def]
                                           digits_test):
    """The ImageNet sections (on the tests' 32x32 stand-in photos): every image loads."""
    from test_photo_attacks import META, _stand_in

    from advlab.reporting.html import render_report
    from advlab.reporting.lecture import LectureContext, run_sections

    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    ctx.use_photos(_stand_in())
    secs = run_sections(ctx, PHOTO_SECTIONS)
    page = tmp_path / "photos.html"
    page.write_text(render_report("photos", secs, META))
    browser.open(page.resolve().as_uri())
    imgs = browser.evaluate(IMAGES_JS)
    assert len(imgs) >= 4  # panda, success curve, cross sections, decision maps
    broken = [i for i in imgs if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert browser.errors() == []
    ids = [s["id"] for s in browser.evaluate(STRUCTURE_JS)["sections"]]
    assert ids == PHOTO_SECTIONS
