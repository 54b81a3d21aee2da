"""The platform rules of the client as pure functions: own names, name lengths, file IDs,
long paths, credentials keys (no server, no volume needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from davsync import fileid, osfs
from davsync.client.credentials import service_name
from davsync.client.filters import Filter
from davsync.client.paths import effective_rules, filter_names, name_problem, own_name


@pytest.mark.parametrize("name", [".davsync", ".DAVSYNC", ".DavSync", ".davsync.", ".davsync ", "DAVSYN~1", "davsyn~12"])
def test_every_spelling_of_the_state_folder_is_davsyncs(name: str) -> None:
    assert own_name(name) == ".davsync"
    kept, skipped = filter_names([name, f"{name}/lock", "ok.txt"], "posix")
    assert kept == {"ok.txt"} and {s.path for s in skipped} == {name, f"{name}/lock"}


@pytest.mark.parametrize("name", ["davsync", ".davsync2", "DAVSYN~X", "x.davsync", "DAVSYNC~1"])
def test_other_names_are_not(name: str) -> None:
    assert own_name(name) is None


def test_the_ignore_file_is_never_synced_in_any_case(tmp_path: Path) -> None:
    filt = Filter.load(tmp_path)
    for name in (".davsyncignore", ".DAVSYNCIGNORE", ".DavSyncIgnore."):
        assert filt.excluded(name, False)
    assert not filt.excluded("sub/.DAVSYNCIGNORE", False)  # only the root one is davsync's


def test_ntfs_counts_utf16_units_not_bytes() -> None:
    cjk = "日" * 200  # 600 UTF-8 bytes, 200 UTF-16 units
    assert name_problem(cjk, "windows", byte_limit=False) is None  # fits NTFS on Windows
    assert "255 bytes" in (name_problem(cjk, "windows", byte_limit=True) or "")  # Linux syscalls refuse it
    assert "UTF-16" in (name_problem("日" * 256, "windows", byte_limit=False) or "")
    emoji = "😀" * 128  # 256 UTF-16 units (surrogate pairs), 512 bytes
    assert "UTF-16" in (name_problem(emoji, "windows", byte_limit=False) or "")


def test_windows_rules_apply_on_windows_whatever_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert effective_rules("posix") == "posix" or sys.platform == "win32"
    monkeypatch.setattr(sys, "platform", "win32")
    assert effective_rules("posix") == "windows"
    assert effective_rules(None) == "windows"
    assert name_problem("a:b", "windows") is not None  # an alternate data stream of `a`


def test_file_ids_fit_sqlite(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.stat(f)
    huge = os.stat_result((st.st_mode, 2**127 + 12345, st.st_dev, 1, 0, 0, 1, 0, 0, 0))
    folded = fileid.file_id(f, huge)
    assert 0 <= folded < 2**63
    assert folded == fileid.file_id(f, huge)  # stable
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (ino INTEGER)")
    db.execute("INSERT INTO t VALUES (?)", (folded,))
    assert fileid.file_id(f, st) in (st.st_ino, 0)


def test_long_path_forms() -> None:
    assert osfs.long_path_form("C:\\sync_root\\a") == "\\\\?\\C:\\sync_root\\a"
    assert osfs.long_path_form("\\\\nas\\share\\a") == "\\\\?\\UNC\\nas\\share\\a"
    assert osfs.long_path_form("\\\\?\\D:\\x") == "\\\\?\\D:\\x"
    assert osfs.display_path(osfs.long_path_form("D:\\sync_root")) == "D:\\sync_root"
    assert osfs.display_path(osfs.long_path_form("\\\\nas\\share")) == "\\\\nas\\share"


def test_write_new_file_is_binary_and_sets_mtime(tmp_path: Path) -> None:
    data = b"a\nb\r\n\x1a\x00" * 10
    st = osfs.write_new_file(tmp_path / "f", data, 1_600_000_000.5)
    assert (tmp_path / "f").read_bytes() == data
    assert st.st_size == len(data) and abs(st.st_mtime - 1_600_000_000.5) < 0.01


def test_the_dest_lock_is_exclusive(tmp_path: Path) -> None:
    with osfs.exclusive_lock(tmp_path / "lock"):
        with pytest.raises(osfs.DestLocked):
            with osfs.exclusive_lock(tmp_path / "lock"):
                pass
    with osfs.exclusive_lock(tmp_path / "lock"):  # released
        pass


def test_replace_retries_a_sharing_violation_then_reports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = os.replace

    def busy(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) <= 2:
            e = PermissionError(13, "in use", dst)
            e.winerror = 32  # type: ignore[attr-defined]
            raise e
        real(src, dst)

    monkeypatch.setattr(osfs, "REPLACE_RETRY_DELAYS", (0.0,) * 6)
    monkeypatch.setattr(os, "replace", busy)
    (tmp_path / "a").write_bytes(b"new")
    osfs.replace(tmp_path / "a", tmp_path / "b")
    assert len(calls) == 3 and (tmp_path / "b").read_bytes() == b"new"

    (tmp_path / "a").write_bytes(b"newer")
    attempts: list[int] = []

    def always(src: str, dst: str, winerror: int | None = 33) -> None:
        attempts.append(1)
        e = PermissionError(13, "in use", dst)
        if winerror is not None:
            e.winerror = winerror  # type: ignore[attr-defined]
        raise e

    monkeypatch.setattr(os, "replace", always)
    with pytest.raises(osfs.FileInUse):
        osfs.replace(tmp_path / "a", tmp_path / "b")
    assert len(attempts) == 7 and (tmp_path / "b").read_bytes() == b"new"

    attempts.clear()  # a plain permission problem (no winerror) is not retried
    monkeypatch.setattr(os, "replace", lambda s, d: always(s, d, None))
    with pytest.raises(PermissionError) as info:
        osfs.replace(tmp_path / "a", tmp_path / "b")
    assert not isinstance(info.value, osfs.FileInUse) and len(attempts) == 1


@pytest.mark.parametrize("url", ["http://Pi:8080", "http://pi:8080/", "HTTP://PI:8080/"])
def test_one_credential_per_share_however_the_url_is_typed(url: str) -> None:
    assert service_name(url) == "davsync:http://pi:8080/"
    assert service_name("https://pi/photos") == "davsync:https://pi:443/photos/"
    assert service_name("https://pi/photos") != service_name("https://pi/music/")


ROOT = Path(__file__).resolve().parent.parent


def test_davsyncw_is_the_windowless_entry_point() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["gui-scripts"]["davsyncw"] == "davsync.cli:run_windowless"
