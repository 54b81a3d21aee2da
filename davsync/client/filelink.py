"""A davsync share link, seen from the client: what its `X-Davsync-Link` header says, and how a
sync keeps to a link that shares one file (it may replace that file, never add anything)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .plan import Action, Kind, Plan

NOTHING_NEW = "this link shares one file, so nothing new can be added through it"


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
    local-only, not as errors that fail every run), and a conflict copy is not uploaded."""
    held = 0
    actions: list[Action] = []
    for a in plan.actions:
        if a.kind in (Kind.UPLOAD, Kind.REMOTE_MKDIR):
            held += 1
            a = Action(Kind.LOCAL_ONLY, a.path, local=a.local, reason=f"new here; {NOTHING_NEW}")
        elif a.upload_copy:
            a = replace(a, upload_copy=False)
        actions.append(a)
    if not held:
        return replace(plan, actions=actions)
    said = f"{held} new local item{'s' if held != 1 else ''} stay{'s' if held == 1 else ''} here"
    return replace(
        plan, actions=actions, warnings=[*plan.warnings, f"{NOTHING_NEW[0].upper()}{NOTHING_NEW[1:]}: {said}."]
    )
