"""fsync_dir tells a refused folder fsync (nothing to do there) from a failed one (the rename may
not be on the disk): a server that swallowed EIO would answer 201 for an upload a power cut loses."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from davsync import osfs


def _fsync_failing_with(code: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.skipif(os.name == "nt", reason="Windows has no folder fsync")
def test_a_folder_fsync_that_fails_with_an_io_error_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fsync_failing_with(errno.EIO, monkeypatch)
    with pytest.raises(OSError) as raised:
        osfs.fsync_dir(tmp_path)
    assert raised.value.errno == errno.EIO and calls


@pytest.mark.skipif(os.name == "nt", reason="Windows has no folder fsync")
@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF])
def test_a_filesystem_that_refuses_folder_fsync_is_accepted(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsync_failing_with(code, monkeypatch)
    osfs.fsync_dir(tmp_path)  # nothing to make durable there: no error
    assert calls
