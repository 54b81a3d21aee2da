"""Plain words for the dashboard.

The client library speaks to command-line users (flags, "journal", "base", "etag", `--json`
keys); the app's user never typed a command. Everything the dashboard shows that came from the
library passes through `plain()`, and change counts are named by `count_words()`, never by key.
"""

from __future__ import annotations

import re

from ..client.plan import Kind

# Every change kind the library can count, as the dashboard says it: (one, many).
COUNT_WORDS: dict[str, tuple[str, str]] = {
    Kind.MKDIR.value: ("new folder", "new folders"),
    Kind.DOWNLOAD.value: ("new from the server", "new from the server"),
    Kind.UPDATE.value: ("changed on the server", "changed on the server"),
    Kind.CONFLICT.value: ("conflict", "conflicts"),
    Kind.ADOPT.value: ("already the same", "already the same"),
    Kind.REFRESH.value: ("checked, unchanged", "checked, unchanged"),
    Kind.LOCAL_MODIFIED.value: ("changed here, kept", "changed here, kept"),
    Kind.DELETE.value: ("moved to the trash", "moved to the trash"),
    Kind.KEPT_HERE.value: ("deleted on the server, kept here", "deleted on the server, kept here"),
    Kind.FORGET.value: ("gone on both sides", "gone on both sides"),
    Kind.RMDIR.value: ("folder removed", "folders removed"),
    Kind.BLOCKED.value: ("could not be placed", "could not be placed"),
    Kind.RENAME.value: ("renamed", "renamed"),
    Kind.UPLOAD.value: ("new, uploaded", "new, uploaded"),
    Kind.UPLOAD_EDIT.value: ("changed here, uploaded", "changed here, uploaded"),
    Kind.REMOTE_MKDIR.value: ("new folder on the server", "new folders on the server"),
    Kind.REMOTE_DELETE.value: ("deleted on the server", "deleted on the server"),
    Kind.REMOTE_RMDIR.value: ("folder deleted on the server", "folders deleted on the server"),
    Kind.REMOTE_MOVE.value: ("moved on the server", "moved on the server"),
    Kind.LOCAL_MOVE.value: ("moved here", "moved here"),
    Kind.KEPT_ON_SERVER.value: ("deleted here, kept on the server", "deleted here, kept on the server"),
    Kind.LOCAL_ONLY.value: ("only on this PC", "only on this PC"),
    Kind.SERVER_CHANGED.value: ("changed on the server, not overwritten", "changed on the server, not overwritten"),
}


def count_words(counts: dict[str, int]) -> list[str]:
    """'3 new from the server', ...; a kind this version does not know is 'other changes'."""
    out = []
    for key, n in counts.items():
        one, many = COUNT_WORDS.get(key, ("other change", "other changes"))
        out.append(f"{n} {one if n == 1 else many}")
    return out


# The library's command-line phrasing -> the app's words (first match first; all are applied).
REWRITES: list[tuple[str, str]] = [
    (r"this system has no credential store \(keyring\) to keep the password in:.*",
     "This computer has no password store (keyring) for davsync to keep the password in: install or "
     "unlock one (on Linux: GNOME Keyring or KWallet), then try again."),
    (r"Check --user and the password \(DAVSYNC_PASSWORD\)", "Check the user name and the password"),
    (r"add --user NAME \(the password is asked for, or read from DAVSYNC_PASSWORD\)",
     "enter a user name and password"),
    (r"give the user with --user and the password with[^.]*", "enter them in the User and Password boxes instead"),
    (r"more than --max-delete (\d+%?)", r"more than the safety limit (\1)"),
    (r"\s*\(use --delete to remove\)", " (turn on 'Also delete here' in Settings to remove it)"),
    (r"\s*\(raise max_delete\)|\s*\(or raise max_delete\)", ""),
    (r"while the (journal|mirror) is not( empty)?", "while this PC still has the files"),
    (r"`davsync serve`", "the davsync server"),
    (r"`davsync (pull|sync|push|watch)[^`]*`", "davsync"),
    (r"\s*\(--json lists them all\)", ""),
    (r"--full\b", "a full check"),
    (r"\(ca_cert\)", ""),
    (r"\bca_cert\b", "CA certificate"),
    (r"\bmax_delete\b", "the safety limit"),
    (r"\bthe journal('s)?\b", "davsync's record of this folder"),
    (r"\bthe base( version)?\b|\bbase version\b", "the last synced version"),
    (r"\betags?\b", "version"),
    (r"\bthe remote\b", "the server"),
]
_REWRITES = [(re.compile(p, re.IGNORECASE), r) for p, r in REWRITES]


def plain(text: str) -> str:
    """The library's sentence in the app's words (file names in it are left as they are)."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text
