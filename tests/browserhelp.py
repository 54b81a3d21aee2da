"""Headless Chromium for page tests, at a chosen window size, with downloads into a folder; PNGs."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PHONE = (390, 844)
DESKTOP = (1280, 900)


@contextmanager
def chromium_at(tmp_path: Path, size: tuple[int, int], downloads: Path) -> Iterator[Any]:
    """A driver whose viewport is `size` (a phone's is 390x844); skips when Chromium is absent."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in the test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not binary or not driver_exe:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    downloads.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_exe))
    driver.set_page_load_timeout(30)
    try:
        width, height = size
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})  # fmt: skip
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver
    finally:
        driver.quit()


def png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A PNG (grey, 8 bit) written by hand, so a test needs no imaging library; `pixels` replaces
    the image data (a file that claims a size it does not hold)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = pixels if pixels is not None else b"".join(b"\0" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def axe_source() -> str:
    """axe-core's script, from a local file, never fetched: `npm pack axe-core` (its tarball ships
    package/axe.min.js) and DAVSYNC_AXE_JS pointing at it (.ci/run does), or node_modules/."""
    for candidate in (os.environ.get("DAVSYNC_AXE_JS"), REPO / "node_modules" / "axe-core" / "axe.min.js"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8")
    pytest.skip("axe-core is not here: `npm pack axe-core`, then DAVSYNC_AXE_JS=.../package/axe.min.js")
