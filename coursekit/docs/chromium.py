"""Headless Chromium driven over the DevTools protocol: pages in, PNG files out.

Debian's `chromium` package is the browser (browser downloads such as
`npx playwright install` are not needed); the protocol is spoken with the
`websockets` package that Airflow already pins, so taking screenshots adds no
dependency to the virtualenv.

    with Chromium() as browser:
        browser.goto("http://127.0.0.1:8080/dags")
        browser.wait_for("document.querySelector('table') !== null")
        browser.screenshot(Path("dags.png"))
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# Quiet, self-contained and reproducible: no sandbox (root in CI), no GPU, no
# calls home, a fresh profile every time.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-color-profile=srgb",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ChromiumError(RuntimeError):
    """The browser could not start, or a page did not do what was expected."""


def find_chromium() -> str | None:
    """The browser binary: $CHROMIUM, else the first known name on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Chromium:
    """One headless browser with one page; a context manager that leaves no process or profile behind."""

    def __init__(self, width: int = 1440, height: int = 900, scale: float = 1.0, binary: str | None = None) -> None:
        self.width, self.height, self.scale = width, height, scale
        self.binary = binary or find_chromium()
        if not self.binary:
            raise ChromiumError("no Chromium found: `apt-get install chromium` (or set CHROMIUM=/path/to/chrome)")
        self._ids = itertools.count(1)
        self._process: subprocess.Popen | None = None
        self._profile: Path | None = None
        self._socket = None

    # -- life cycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Chromium:
        self._profile = Path(tempfile.mkdtemp(prefix="coursekit-chromium-"))
        command = [
            self.binary,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self._log = open(self._profile.parent / f"{self._profile.name}.log", "wb")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._connect()
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.resize(self.width, self.height)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self, timeout: float = 30) -> None:
        from websockets.sync.client import connect

        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise ChromiumError(f"Chromium did not start; its output is in {self._log.name}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        page = next(t for t in targets if t.get("type") == "page")
        self._socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)

    def __exit__(self, *exc_info: object) -> None:
        if self._socket is not None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:  # closing anyway
                pass
            self._socket.close()
            self._socket = None
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for sig in (signal.SIGTERM, signal.SIGKILL):  # helpers (zygote, renderers) share its group
                try:
                    os.killpg(self._process.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
            self._process.wait()
            self._process = None
        if self._profile is not None:
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)
            Path(self._log.name).unlink(missing_ok=True)
            self._profile = None

    # -- protocol --------------------------------------------------------------------------------------

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict:
        """One DevTools command; returns its result (events arriving meanwhile are dropped)."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError(f"{method}: no answer within {timeout:.0f} s")
            message = json.loads(self._socket.recv(timeout=remaining))
            if message.get("id") == message_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    # -- what the callers use ------------------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=self.scale,
            mobile=False,
        )

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
        """Press the left mouse button at `start`, move to `end`, release (CSS pixels)."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=start[0], y=start[1])
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], button="left", clickCount=1)
        for step in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * step / steps
            y = start[1] + (end[1] - start[1]) * step / steps
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left", clickCount=1)
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=self.width - 1, y=self.height - 1)  # no tooltips

    def center_of(self, selector: str) -> tuple[float, float]:
        """The middle of the first element matching `selector`, in CSS pixels of the viewport."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return box[0], box[1]

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.send("Network.setCookie", name=name, value=value, url=url, httpOnly=True, sameSite="Lax")

    def goto(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait until the document has loaded (scripts may still be rendering)."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise ChromiumError(f"{url}: {result['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout=timeout, what=f"{url} to load")

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except ChromiumError:
                value = None  # e.g. the page is navigating
            if value:
                return value
            if time.monotonic() > deadline:
                raise ChromiumError(f"timed out after {timeout:.0f} s waiting for {what or expression}")
            time.sleep(0.25)

    def screenshot(self, path: Path, clip: dict[str, float] | None = None) -> Path:
        """The viewport, or the `clip` rectangle (CSS pixels: x, y, width, height), as a PNG file."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": clip is not None}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def screenshot_element(self, path: Path, selector: str, margin: int = 0) -> Path:
        """Just the first element matching `selector` (plus `margin` CSS pixels around it)."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"
        )
        clip = {
            "x": max(0, box["x"] - margin),
            "y": max(0, box["y"] - margin),
            "width": box["width"] + 2 * margin,
            "height": box["height"] + 2 * margin,
        }
        return self.screenshot(path, clip)
