"""The README's screenshots of the server's browser pages, made again (called by `python -m
tests.screens`, or alone: `python -m tests.screens_pages [--out docs]`).

Starts a real `DavServer` on 127.0.0.1 over a temporary folder with realistic names, opens it in
headless Chromium as a user who may write, and shoots the folder page, its share box with a link
made, and a drop link's page after an upload: phone (390 px) and desktop, light and dark.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from davsync.server.app import DavServer
from davsync.server.links import LinkStore
from davsync.server.settings import ServeSettings
from davsync.users import Users

PHONE, DESKTOP = 390, 1280
USER, PASSWORD = "anna", "screenshots only"


def _tree(root: Path) -> None:
    for folder in ("2026 Holiday", "Letters", "Garden"):
        (root / folder).mkdir(parents=True)
    files = {"2026 Holiday/beach.jpg": 2_400_000, "2026 Holiday/IMG_4711.jpg": 3_100_000,
             "Letters/Tax return 2026.odt": 51_877, "Budget 2026.ods": 18_230, "Recipes.pdf": 412_000,
             "Notes.txt": 1_204, "Wedding speech.mp3": 4_800_000}  # fmt: skip
    for name, size in files.items():
        (root / name).write_bytes(os.urandom(size))


def shoot(out: Path) -> list[Path]:
    from selenium.webdriver.common.by import By

    from tests.browserhelp import chromium_at

    made: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        _tree(base / "Files")
        users = Users({})
        users.add(USER, PASSWORD, read_only=False)
        users.save(base / "users.json")
        settings = ServeSettings(root=base / "Files", host="127.0.0.1", port=0, state_dir=base / "state",
                                 users=base / "users.json").resolved()  # fmt: skip
        server = DavServer(settings, users)
        server.start()
        _wait(server.scan_done.is_set)
        url = f"http://127.0.0.1:{server.port}/"
        (base / "IMG_5012.jpg").write_bytes(os.urandom(1_500_000))
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        stack = ExitStack()
        try:
            driver = stack.enter_context(chromium_at(base, (PHONE, 900), base / "downloads"))
            driver.execute_cdp_cmd("Network.enable", {})
            for width in (PHONE, DESKTOP):
                size = "phone" if width == PHONE else "desktop"
                for scheme in ("light", "dark"):
                    suffix = "" if scheme == "light" else "-dark"

                    def viewport(width: int = width) -> None:
                        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900,
                                               "deviceScaleFactor": 1, "mobile": width == PHONE})  # fmt: skip

                    viewport()
                    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                           {"features": [{"name": "prefers-color-scheme", "value": scheme}]})  # fmt: skip
                    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                           {"headers": {"Authorization": f"Basic {auth}"}})  # fmt: skip
                    driver.get(url)
                    made.append(_save(driver, out / f"pages-{size}-listing{suffix}.png"))
                    viewport()
                    (base / "state" / "shares.json").unlink(missing_ok=True)  # one link in the list: the one made now
                    drop = LinkStore(base / "state").create("2026 Holiday", "drop", expires_in=3600, password=None)
                    driver.get(url + "2026%20Holiday/")
                    driver.find_element(By.CSS_SELECTOR, "#share summary").click()
                    driver.find_element(By.ID, "share-label").send_keys("Holiday photos")
                    driver.find_element(By.ID, "share-create").click()
                    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=active]"))
                    driver.execute_script("document.getElementById('share').scrollIntoView()")
                    made.append(_save(driver, out / f"pages-{size}-share{suffix}.png", whole=False))
                    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
                    viewport()
                    driver.get(f"{url}s/{drop.token}/")
                    driver.find_element(By.ID, "files").send_keys(str(base / "IMG_5012.jpg"))
                    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]"))
                    made.append(_save(driver, out / f"pages-{size}-drop{suffix}.png"))
        finally:
            stack.close()
            server.stop()
    return made


def _save(driver: Any, path: Path, whole: bool = True) -> Path:
    """The viewport, or (whole) the page down to its end, at most 1400 px."""
    if whole:
        width = driver.execute_script("return window.innerWidth")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(max(height, 500),
                               1400), "deviceScaleFactor": 1, "mobile": width < 600})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    print(path)
    return path


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    shoot(ap.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
