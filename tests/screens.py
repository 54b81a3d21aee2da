"""The README's dashboard screenshots, made again: `python -m tests.screens [--out docs]` (and
the server's browser pages: tests/screens_pages.py).

Starts the real app and its dashboard on 127.0.0.1 (no folder pairs, nothing synced), opens it in
headless Chromium, and has the page render scenes with realistic names: a conflict (light and
dark), a sync in progress in a narrow window, a server that is down, the page after Quit, and the
panels that ask the server (share links with a QR code, a file's versions, several conflicts,
adding a pair, adopting a big folder), whose answers the scene supplies (FIXTURES).
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
        "share": [_pair("Photos", last_result="Nothing changed.")],
        "versions": [_pair("Documents")],
        "conflicts": three_conflicts(),
        "add": [],
        "adopting": adopting(),
    }


def adopting() -> list[PairStatus]:
    checking = Progress(files_total=18_240, files_done=6_112, bytes_total=48_300_000_000, phase="checking")
    checking.add_bytes(0, time.monotonic() - 4)
    checking.add_bytes(16_100_000_000)
    return [_pair("Photos", progress=checking, running=True, last_check=None, last_result="")]


def three_conflicts() -> list[PairStatus]:
    def c(path: str, ext: str, theirs: tuple[int, float], mine: tuple[int, float]) -> dict[str, Any]:
        stem = path.rsplit(".", 1)[0]
        return {"path": path, "local_copy": f"{stem}.sync-conflict-20261207-0912{ext}",
                "reason": "changed both locally and on the server", "time": NOW - 300,
                "theirs": {"size": theirs[0], "mtime": NOW - theirs[1]}, "mine": {"size": mine[0], "mtime": NOW - mine[1]}}  # fmt: skip

    conflicts = [c("Letters/Tax return 2026.odt", ".odt", (48_213, 3600), (51_877, 900)),
                 c("Shopping list.txt", ".txt", (412, 7200), (388, 600)),
                 c("Budget 2027.ods", ".ods", (120_554, 86400), (119_020, 1800))]  # fmt: skip
    return [_pair("Documents", conflicts=conflicts, last_result="3 conflicts.")]


def fixtures() -> dict[str, Any]:
    """What the server would answer in the scenes that ask it (the longest matching key answers)."""
    import segno

    link_url = "http://raspberrypi.local:8080/s/Qx7mV2cTtq9Lw0bKdE4nYh8sPaR/"
    day = 86400
    links = [{"id": "a3f9c1", "path": "Grandma's 80th", "mode": "read-only", "state": "active", "expires": NOW + 6 * day,
              "has_password": False, "label": "for the family", "created": NOW - day},
             {"id": "7be201", "path": "Garden", "mode": "drop", "state": "revoked", "expires": None,
              "has_password": True, "label": "neighbours' photos", "created": NOW - 9 * day}]  # fmt: skip
    made = {"id": "c41d07", "path": "2026 Holiday", "mode": "read-only", "state": "active", "expires": NOW + 7 * day,
            "has_password": False, "label": "", "created": NOW}  # fmt: skip
    entry = {"is_dir": True, "size": None, "mtime": None}
    return {
        "/api/pairs/photos/browse": {"folder": "", "entries": [
            {**entry, "path": n, "name": n} for n in ("2026 Holiday", "Garden", "Grandma's 80th")] + [
            {"path": "IMG_4711.jpg", "name": "IMG_4711.jpg", "is_dir": False, "size": 3_481_220, "mtime": NOW - day}]},
        "/api/pairs/photos/links": {"links": [made, *links]},
        "/api/pairs/photos/share": {"link": made, "url": link_url,
                                    "qr": segno.make(link_url, error="m").svg_data_uri(scale=5, border=2),
                                    "message": "Link made. It is shown only now: copy it or scan the code."},
        "/api/pairs/documents/browse?path=Letters": {"folder": "Letters", "entries": [
            {"path": "Letters/Tax return 2026.odt", "name": "Tax return 2026.odt", "is_dir": False, "size": 48_213,
             "mtime": NOW - 3600},
            {"path": "Letters/To the landlord.odt", "name": "To the landlord.odt", "is_dir": False, "size": 22_901,
             "mtime": NOW - 40 * day}]},  # fmt: skip
        "/api/pairs/documents/browse": {"folder": "", "entries": [{**entry, "path": "Letters", "name": "Letters"}]},
        "/api/pairs/documents/links": {"links": []},
        "/api/pairs/documents/versions": {"versions": [
            {"id": "v9", "size": "47.9 kB", "time": _iso(NOW - 3600), "user": "anna", "how": "PUT"},
            {"id": "v8", "size": "46.2 kB", "time": _iso(NOW - 2 * day), "user": "anna", "how": "PUT"},
            {"id": "v5", "size": "31.0 kB", "time": _iso(NOW - 12 * day), "user": "tom", "how": "PUT"}]},
        "/api/pairs/documents/preview": {"kind": "text", "text": "Milk\nEggs\nBread (the dark one)\nApples\n"},
        "/api/discover": {"servers": [{"name": "davsync on raspberrypi", "url": "http://192.168.1.20:8080/",
                                       "host": "raspberrypi.local"}], "problem": ""},  # fmt: skip
        "/api/remote-folders": {"base": "http://192.168.1.20:8080/", "folder": "", "files": 2, "folders": [
            {"path": n, "name": n, "is_dir": True, "skip": f"/{n}/"} for n in ("Documents", "Music", "Photos", "Videos")]},
        "/api/check-local": {"ok": True, "detail": "C:\\Users\\Anna\\Pi will be created"},
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# What the page does before a scene's screenshot (the scene's answers come from fixtures()).
ACTIONS = {
    "share": """
        document.querySelector('.share-panel').open = true;
        await until(() => document.querySelector('.browse li[data-path="2026 Holiday"] .share'));
        document.querySelector('.browse li[data-path="2026 Holiday"] .share').click();
        document.querySelector('.share-form .make-link').click();
        await until(() => document.querySelector('.made-link img.qr'));""",
    "versions": """
        document.querySelector('.share-panel').open = true;
        await until(() => document.querySelector('.browse li[data-path="Letters"] .open-folder'));
        document.querySelector('.browse li[data-path="Letters"] .open-folder').click();
        await until(() => document.querySelector('.browse li[data-path="Letters/Tax return 2026.odt"] .show-versions'));
        document.querySelector('.browse li[data-path="Letters/Tax return 2026.odt"] .show-versions').click();
        await until(() => document.querySelector('.version-list li[data-version]'));""",
    "conflicts": """
        document.querySelector('.conflict[data-path="Shopping list.txt"] .pick').click();
        document.querySelector('.conflict[data-path="Budget 2027.ods"] .pick').click();
        document.querySelector('.conflict[data-path="Shopping list.txt"] .preview-open').click();
        await until(() => document.querySelector('.preview pre'));""",
    "add": """
        document.getElementById('add-open').click();
        await until(() => document.querySelector('#lan-list .use-server'));
        document.querySelector('#lan-list .use-server').click();
        document.getElementById('add-user').value = 'anna';
        document.getElementById('add-browse').click();
        await until(() => document.querySelector('#remote-list .sync-sub'));
        document.querySelector('#remote-list li[data-path="Videos"] .sync-sub').click();
        document.getElementById('add-local').value = 'C:\\\\Users\\\\Anna\\\\Pi';
        document.getElementById('add-local').dispatchEvent(new Event('change'));
        await until(() => document.getElementById('add-local-check').textContent);""",
}

# (file name, scene, colour scheme, window width)
SHOTS = [
    ("app-dashboard.png", "conflict", "light", 1100),
    ("app-dashboard-dark.png", "conflict", "dark", 1100),
    ("app-syncing-narrow.png", "syncing", "light", 420),
    ("app-offline.png", "offline", "light", 1100),
    ("app-lost-contact.png", "lost", "light", 1100),
    ("app-share-link.png", "share", "light", 1100),
    ("app-share-link-dark.png", "share", "dark", 1100),
    ("app-versions.png", "versions", "light", 1100),
    ("app-conflicts.png", "conflicts", "light", 1100),
    ("app-conflicts-narrow.png", "conflicts", "dark", 420),
    ("app-add-pair.png", "add", "light", 1100),
    ("app-adopting.png", "adopting", "light", 1100),
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
            all_scenes, answers = scenes(), fixtures()
            for name, scene, scheme, width in SHOTS:
                driver.get(f"http://127.0.0.1:{dash.port}/")  # each scene on a fresh page
                _wait(lambda: driver.execute_script("return document.getElementById('overall').dataset.state") == "empty")
                driver.execute_script("source.close();")  # the scenes below stand still
                csrf = driver.execute_script("return csrf")
                driver.execute_script(SCENE_ANSWERS, answers)
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
                if scene in ACTIONS:
                    driver.execute_async_script(
                        "const done = arguments[arguments.length - 1];"
                        "const until = async (f) => { for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 25)); };"
                        f"(async () => {{ {ACTIONS[scene]} }})().then(() => done(true), (e) => done(String(e)));"
                    )
                    driver.execute_script("window.scrollTo(0, 0); document.getElementById('message').hidden = true;")
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(width, min(max(height, 500), 1400))
                args.out.mkdir(exist_ok=True)
                driver.save_screenshot(str(args.out / name))
                print(args.out / name)
        finally:
            driver.quit()
            app.stop()
            dash.stop()
    from tests.screens_pages import shoot  # the server's browser pages

    shoot(args.out)
    return 0


SCENE_ANSWERS = """const answers = arguments[0];
window.api = async (path) => {
  const key = Object.keys(answers).filter((k) => path.startsWith(k)).sort((a, b) => b.length - a.length)[0];
  if (key === undefined) throw new Error("not in this scene");
  return JSON.parse(JSON.stringify(answers[key]));
};"""


def _wait(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard did not load")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
