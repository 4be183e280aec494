"""A real `streamlit run` server and a Debian Chromium driven by Playwright.

Shared by the end-to-end test and the browser benchmark. Chromium comes from
Debian's `chromium` package (`make browser`); Playwright's own browser download
is never used.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict | None = None, timeout: float = 90):
    """Yield (base_url, process, seconds_to_healthy) for `streamlit run dashboard/app.py`."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]
    t0 = time.perf_counter()
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, **(env or {})}  # as `make app` starts it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read()}")
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("streamlit did not become healthy")
            time.sleep(0.1)
        yield url, proc, time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def browser_page(viewport=(1440, 1000)):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the script has started and finished its run."""
    page.wait_for_timeout(150)
    page.wait_for_selector(IDLE, timeout=timeout)


def upload_through_chooser(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        # "Upload" (or "Browse files" in older releases) when empty, "Add files" once a file is there
        page.get_by_role("button", name=re.compile("^(Upload|Browse files|Add files)$")).first.click()
    chooser.value.set_files(str(path))
