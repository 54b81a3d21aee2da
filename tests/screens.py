"""The README's dashboard screenshots, made again: `python -m tests.screens [--out docs]`.

Starts the real app and its dashboard on 127.0.0.1 (no folder pairs, nothing synced), opens it in
headless Chromium, and has the page render scenes with realistic names: a conflict (light and
dark), a sync in progress in a narrow window, a server that is down, and the page after Quit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from davsync.app.config import AppConfig
from davsync.app.core import App
from davsync.app.status import PairStatus, Progress, StatusHub
from davsync.app.web import Dashboard

NOW = time.time()
PI = "http://raspberrypi.local:8080/"


def _pair(name: str, **kw: Any) -> PairStatus:
    p = PairStatus(id=name.lower(), url=PI + name + "/", local=f"C:\\Users\\Anna\\{name}", mode="sync",
                   interval=60, last_check=NOW - 20, last_result="Nothing changed.")  # fmt: skip
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def _recent(*items: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"time": NOW - 60 * i, "what": what, "path": path} for i, (what, path) in enumerate(items)]


def scenes() -> dict[str, list[PairStatus]]:
    progress = Progress(files_total=40, files_done=12, bytes_total=412_000_000, current=["2026 Holiday/IMG_4711.jpg"])
    progress.add_bytes(0, time.monotonic() - 4)
    progress.add_bytes(120_000_000)
    photos = _pair("Photos", counts={"download": 3, "upload": 1},
                   last_result="3 downloaded (14.2 MB), 1 uploaded (2.1 MB).")  # fmt: skip
    photos.recent.extend(_recent(("downloaded", "2026 Holiday/beach.jpg"), ("uploaded", "Garden/roses.jpg")))
    conflict = {"path": "Letters/Tax return 2026.odt", "local_copy": "Letters/Tax return 2026.sync-conflict-1.odt",
                "reason": "changed both locally and on the server", "time": NOW - 300,
                "theirs": {"size": 48_213, "mtime": NOW - 3600}, "mine": {"size": 51_877, "mtime": NOW - 900}}  # fmt: skip
    return {
        "conflict": [photos, _pair("Documents", conflicts=[conflict], last_result="1 conflict.")],
        "syncing": [_pair("Photos", progress=progress, running=True), _pair("Documents")],
        "offline": [_pair("Photos", offline_since=NOW - 240, next_retry=NOW + 50, last_run_failed=True,
                          last_result="Could not reach the server: nothing is listening there."),
                    _pair("Documents")],  # fmt: skip
        "lost": [photos, _pair("Documents")],
    }


# (file name, scene, colour scheme, window width)
SHOTS = [
    ("app-dashboard.png", "conflict", "light", 1100),
    ("app-dashboard-dark.png", "conflict", "dark", 1100),
    ("app-syncing-narrow.png", "syncing", "light", 420),
    ("app-offline.png", "offline", "light", 1100),
    ("app-lost-contact.png", "lost", "light", 1100),
]


def main() -> int:
    from selenium import webdriver

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = ap.parse_args()
    binary, driver_exe = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not binary or not driver_exe:
        print("needs chromium and chromedriver", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        app = App(AppConfig.load(Path(tmp) / "app.toml"), Path(tmp) / "state")
        dash = Dashboard(app, 0)
        app.start()
        dash.start()
        opts = webdriver.ChromeOptions()
        opts.binary_location = binary
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--hide-scrollbars", f"--user-data-dir={Path(tmp) / 'profile'}"):  # fmt: skip
            opts.add_argument(arg)
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_exe))
        try:
            driver.get(dash.login_url())
            _wait(lambda: driver.execute_script("return document.getElementById('overall').dataset.state") == "empty")
            driver.execute_script("source.close();")  # the scenes below stand still
            csrf = driver.execute_script("return csrf")
            all_scenes = scenes()
            for name, scene, scheme, width in SHOTS:
                driver.set_window_size(width, 900)
                driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                       {"features": [{"name": "prefers-color-scheme", "value": scheme}]})  # fmt: skip
                hub = StatusHub()
                hub.set_pairs(all_scenes[scene])
                snap = hub.snapshot() | {"csrf": csrf, "config_file": "C:\\Users\\Anna\\AppData\\Roaming\\davsync\\app.toml"}
                for view in snap["pairs"]:
                    view["settings"] = {}
                driver.execute_script("render(arguments[0]); window.scrollTo(0, 0);", snap)
                if scene == "lost":
                    driver.execute_script("lost();")
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(width, min(max(height, 500), 1400))
                args.out.mkdir(exist_ok=True)
                driver.save_screenshot(str(args.out / name))
                print(args.out / name)
        finally:
            driver.quit()
            app.stop()
            dash.stop()
    return 0


def _wait(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard did not load")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
