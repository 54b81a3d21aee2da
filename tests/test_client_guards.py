"""Client deletion guards at the edges (issue 24, items 1 and 5): a refused deletion stays refused
until a complete listing confirms it, `pull --delete` has sync's default limit, `--quiet` says
when files went to the trash, and a one-file share may lose its file."""

from __future__ import annotations

from pathlib import Path

from test_pull import pull_cli, pull_json


def files(dest: Path) -> set[str]:
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and ".davsync" not in p.parts}


def trashed(dest: Path) -> list[Path]:
    return [p for p in (dest / ".davsync" / "trash").rglob("*") if p.is_file()]


def test_pull_delete_has_the_default_limit_of_sync(share, tmp_path: Path) -> None:
    for i in range(10):
        (share.root / f"f{i}.txt").write_text(f"file {i}")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert pull_json(share.url, dest)[0] == 0
    for i in range(6):
        (share.root / f"f{i}.txt").unlink()
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete")
    assert "delete" not in out["done"] and len(files(dest)) == 10, out
    assert code == 3 and any("max-delete" in w for w in out["warnings"]), out
    code, out = pull_json(share.url, dest, "--delete", "--max-delete", "100%")
    assert code == 0 and len(out["done"]["delete"]) == 6, out


def test_quiet_still_says_that_files_went_to_the_trash(share, tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (share.root / name).write_text(name)
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert pull_cli(share.url, dest, "--quiet").returncode == 0
    (share.root / "a.txt").unlink()
    share.wait_indexed()
    r = pull_cli(share.url, dest, "--quiet", "--delete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(trashed(dest)) == 1
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "1 file" in lines[0] and "trash" in lines[0], r.stdout


def test_a_refused_deletion_waits_for_a_complete_listing(share, tmp_path: Path) -> None:
    for i in range(10):
        (share.root / f"f{i}.txt").write_text(f"file {i}")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert pull_json(share.url, dest)[0] == 0
    for i in range(10):
        (share.root / f"f{i}.txt").unlink()  # the share looks empty: refused
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete")
    assert code == 3 and "delete" not in out["done"] and len(files(dest)) == 10, out
    for i in range(6):
        (share.root / f"f{i}.txt").write_text(f"file {i}")  # most come back (a rebuild under way?)
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete")
    # Not judged from a list of changes: only a complete listing may confirm what a guard refused.
    assert out["mode"] == "walk", out
    assert code == 0 and sorted(out["done"]["delete"]) == [f"f{i}.txt" for i in range(6, 10)], out
    code, out = pull_json(share.url, dest, "--delete")
    assert code == 0 and out["mode"] == "sync-collection", out


def test_a_one_file_share_may_lose_its_file(share, tmp_path: Path) -> None:
    (share.root / "only.txt").write_text("the one file")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert pull_json(share.url, dest)[0] == 0
    (share.root / "only.txt").unlink()
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete")
    assert code == 0 and out["done"].get("delete") == ["only.txt"], out
    assert not out["warnings"], out
    assert len(trashed(dest)) == 1


def test_a_one_file_share_deleted_here_is_deleted_on_the_server_by_sync(share, tmp_path: Path) -> None:
    from test_sync_cli import sync

    (share.root / "only.txt").write_text("the one file")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert sync(share, dest).exit_code == 0
    (dest / "only.txt").unlink()
    out = sync(share, dest).as_json()
    assert out["exit_code"] == 0 and out["done"].get("remote-delete") == ["only.txt"], out
    assert not (share.root / "only.txt").exists()
    (share.root / "again.txt").write_text("one file again")
    share.wait_indexed()
    assert sync(share, dest).exit_code == 0
    (share.root / "again.txt").unlink()
    share.wait_indexed()
    out = sync(share, dest).as_json()
    assert out["exit_code"] == 0 and out["done"].get("delete") == ["again.txt"], out
