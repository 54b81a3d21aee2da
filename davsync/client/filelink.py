"""A davsync share link, seen from the client: what its `X-Davsync-Link` header says, and how a
sync keeps to a link that shares one file (it may replace that file, never add anything)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .plan import Action, Kind, Plan
from .plan.model import file_record

NOTHING_NEW = "this link shares one file, so nothing new can be added through it"
MAY_NOT_CHANGE = "this link may not %s the file it shares"


def share_link(header: str | None) -> dict[str, str] | None:
    """The `X-Davsync-Link: mode=...; id=...; expires=...; kind=file` header of a davsync share link, parsed."""
    if not header:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in header.split(";") if "=" in part)
    return fields if "mode" in fields else None


def file_link(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The link a share root's answer names, when it is a link to one file."""
    link = share_link(headers.get("X-Davsync-Link")) if headers is not None else None
    return link if link is not None and link.get("kind") == "file" else None


def keep_to_the_file(plan: Plan) -> Plan:
    """A plan for a read-write file link: new local files and folders stay here (reported once, as
    local-only, not as errors that fail every run), and a conflict copy is not uploaded. The link
    may not delete or rename its file (the server says 403), so, as for a read-only account, a
    file deleted here is fetched back, and one renamed here is fetched back beside its new name."""
    held = 0
    said: list[str] = []
    actions: list[Action] = []
    for a in plan.actions:
        if a.kind == Kind.REMOTE_MOVE and a.src is not None and a.remote is not None and not a.remote.is_dir:
            said.append(f"{a.src} was renamed here to {a.path}, but {MAY_NOT_CHANGE % 'rename'}: it is fetched "
                        f"back from the server, and {a.path} stays here as a new file.")  # fmt: skip
            actions.append(_restore(a, a.src, "renamed"))
            a = Action(Kind.LOCAL_ONLY, a.path, local=a.local, reason=f"new here; {NOTHING_NEW}")
        elif a.kind == Kind.REMOTE_DELETE and a.remote is not None:
            said.append(
                f"{a.path} was deleted here, but {MAY_NOT_CHANGE % 'delete'}: it is fetched back from the server."
            )
            a = _restore(a, a.path, "deleted")
        if a.kind in (Kind.UPLOAD, Kind.REMOTE_MKDIR):
            a = Action(Kind.LOCAL_ONLY, a.path, local=a.local, reason=f"new here; {NOTHING_NEW}")
        elif a.upload_copy:
            a = replace(a, upload_copy=False)
        held += a.kind == Kind.LOCAL_ONLY and a.reason.endswith(NOTHING_NEW)
        actions.append(a)
    if held:
        stay = f"{held} new local item{'s' if held != 1 else ''} stay{'s' if held == 1 else ''} here"
        said.insert(0, f"{NOTHING_NEW[0].upper()}{NOTHING_NEW[1:]}: {stay}.")
    return replace(plan, actions=actions, warnings=[*plan.warnings, *said])


def _restore(a: Action, path: str, done: str) -> Action:
    """The server's file fetched back to `path` (`done` here: "deleted" or "renamed", which the link cannot do)."""
    assert a.remote is not None
    why = f"{done} here, but {MAY_NOT_CHANGE % done.removesuffix('d')}: restored"
    return Action(Kind.DOWNLOAD, path, a.remote, None, why, base=a.base, record=file_record(a.remote))
