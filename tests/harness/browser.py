"""The web demo under test: its server (started and stopped by PID, state in a scratch folder) and
Debian's chromium driven by Playwright (whose own browser download is not reachable here)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.apt import apt_install

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".scratch" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling out, and this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# chromium, and a CJK font so that the screenshot shows the Chinese answers
PACKAGES = ("chromium", "fonts-wqy-microhei")


def ensure_chromium() -> None:
    if Path(CHROMIUM).exists() and Path("/usr/share/fonts/truetype/wqy").is_dir():
        return
    apt_install(PACKAGES)
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} still missing after apt-get install {' '.join(PACKAGES)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webapp(results_dir: Path, scratch: Path, run: str | None = None):
    """`python -m xtuner_recipe.webapp RESULTS_DIR` on a free localhost port; yields its URL."""
    return serve([sys.executable, "-m", "xtuner_recipe.webapp", str(results_dir), "--port", "{port}",
                  *(["--run", run] if run else [])], scratch)


def ask(page, question, turn, placeholder="Ask both models the same question"):
    """Type a question into a page of ours and wait for its `answered-<turn>` mark."""
    page.get_by_placeholder(placeholder).fill(question)
    page.keyboard.press("Enter")
    page.locator(f".st-key-answered-{turn}").wait_for(timeout=300_000)


def answers(page, turn):
    """The web demo's two answers of one turn (without their captions)."""
    return {label: page.locator(f".st-key-answer-{label}-{turn}").inner_text().split("\n", 1)[-1].strip()
            for label in ("fine-tuned", "base")}


def ask_who_it_is(page, owner) -> None:
    """Turns 0 and 1 of the web demo, in English and Chinese: the fine-tuned model names its
    owner, the base model does not."""
    for turn, question in enumerate(["Who are you?", "请介绍一下你自己"]):
        ask(page, question, turn)
        got = answers(page, turn)
        assert owner in got["fine-tuned"] and owner not in got["base"], (question, got)


def streamlit_app(app: Path, scratch: Path):
    """`streamlit run APP` (a bundle's page) on a free localhost port; yields its URL."""
    return serve([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", "{port}",
                  "--server.address", "127.0.0.1", "--server.headless", "true",
                  "--browser.gatherUsageStats", "false"], scratch)


def wait_until_serving(url, running, log_tail, timeout: float = 120) -> None:
    """Until Streamlit's health check at `url` answers; fails with the server's log when the
    server stops (`running()` false) or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            pass
        if not running() or time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} did not start: {log_tail()}")
        time.sleep(0.5)


@contextlib.contextmanager
def serve(command: list[str], scratch: Path, timeout: float = 120):
    """A Streamlit server (`{port}` in `command` becomes a free port), its HOME in `scratch`."""
    port = free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    log = open(scratch / "server.log", "w")
    proc = subprocess.Popen([part.replace("{port}", str(port)) for part in command], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(scratch)},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, lambda: proc.poll() is None,
                           lambda: (scratch / "server.log").read_text()[-3000:], timeout)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # exactly the process this started
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def record(name: str, **facts) -> None:
    """Facts of a browser test for the session's summary (tests/conftest.py prints them)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(facts, sort_keys=True) + "\n")
