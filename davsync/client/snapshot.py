"""The server's side of a run, as one RemoteView: a full walk, or the changes since the stored token.

One builder per listing mode, each returning the same `RemoteSnapshot`; the planner never
learns which one ran. Names this computer cannot hold are reported and not judged (a skipped
name must never look deleted), and so is anything the excluded filter names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field

from .journal import Journal
from .paths import NameRules, Skipped, filter_names
from .plan import JournalEntry, RemoteView
from .remote import Changes, Remote, SyncTokenInvalid, SyncUnsupported
from .transport import RemoteError
from .walk import walk


@dataclass
class RemoteSnapshot:
    view: RemoteView
    token: str | None  # stored once the run handled everything it covers
    mode: str  # "walk", "initial-report" (a whole listing in one REPORT) or "sync-collection" (changes)
    skipped: list[Skipped] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # folder -> why its listing failed
    # Incremental only: the paths the changes concern (changed, removed, and below removed
    # folders); the journal rows for these are the base a pull needs.
    touched: set[str] = field(default_factory=set)
    # Incremental only: the deletions held here earlier (journal.gone()), as read for these
    # changes; a pull judges them again without a second pass over the journal.
    gone: dict[str, JournalEntry] | None = None
    files: int | None = None  # the journal's file count, when these changes needed it (a pass too)

    @property
    def not_judged(self) -> set[str]:
        return {s.path for s in self.skipped}


Excluded = Callable[[str, bool], bool]


class Ask:
    """The root's sync token has not been asked for yet in this run."""


ASK = Ask()


def walk_snapshot(
    remote: Remote,
    *,
    jobs: int,
    excluded: Excluded,
    rules: NameRules,
    fold_case: bool,
    token: str | None,
    synced: Container[str] = frozenset(),
) -> RemoteSnapshot:
    """Everything (Depth-1 PROPFIND per folder). `token`: the root's sync token, asked before the walk.
    `synced`: the paths already synced here (of letter-case twins, the one synced stays)."""
    listing = walk(remote, jobs=max(2, jobs), excluded=excluded)
    if "" in listing.failed:
        raise RemoteError(listing.failed[""])
    kept, skipped = filter_names(listing.entries, rules, fold_case=fold_case, prefer=synced)
    entries = {p: e for p, e in listing.entries.items() if p in kept}
    view = RemoteView(entries, failed=frozenset(listing.failed))
    return RemoteSnapshot(view, token, "walk", listing.skipped + skipped, dict(listing.failed))


def initial_snapshot(remote: Remote, *, excluded: Excluded, rules: NameRules, fold_case: bool) -> RemoteSnapshot | None:
    """Everything in one request, for a first run: RFC 6578's initial sync-collection (the
    empty token) lists every member with its properties and gives the token the next run
    continues from. None when the server offers no sync-collection, or the answer failed or
    was cut (then the walk lists instead, folder by folder with retries): nothing of a
    failed answer is used, so a cut listing never looks like deletions.

    The same safety as the walk: hostile hrefs are refused (reported, not judged), as are
    names this computer cannot hold; excluded names and everything below an excluded folder
    are left out; and an answer listing an entry without its folder (which no walk can
    produce) is not used: the walk lists instead."""
    try:
        changes = remote.sync_collection("")
    except (SyncTokenInvalid, SyncUnsupported):
        return None
    except RemoteError as e:
        if e.fatal:
            raise
        return None
    folders = {p for p, e in changes.changed.items() if e.is_dir}
    if any(p.rpartition("/")[0] not in folders for p in changes.changed if "/" in p):
        return None  # an entry without its folder (a race, or a broken server): the walk knows better
    left_out: dict[str, bool] = {"": False}  # folder -> is it, or a folder above it, excluded
    for folder in sorted(folders, key=lambda f: f.count("/")):  # parents first: no recursion
        left_out[folder] = left_out[folder.rpartition("/")[0]] or excluded(folder, True)
    listed = {
        path: entry
        for path, entry in changes.changed.items()
        if not left_out[path.rpartition("/")[0]] and not excluded(path, entry.is_dir)
    }
    kept, skipped = filter_names(listed, rules, fold_case=fold_case, prefer=frozenset())  # a first run: none synced
    entries = {p: e for p, e in listed.items() if p in kept}
    view = RemoteView(entries)
    return RemoteSnapshot(view, changes.token, INITIAL, changes.skipped + skipped)


INITIAL = "initial-report"


def changes_snapshot(
    remote: Remote,
    journal: Journal,
    token: str,
    *,
    excluded: Excluded,
    rules: NameRules,
    fold_case: bool,
    warnings: list[str],
) -> RemoteSnapshot | None:
    """What changed since `token` (RFC 6578), or None when only a walk can tell."""
    try:
        changes = remote.sync_collection(token)
    except SyncTokenInvalid:
        warnings.append("The server no longer knows this folder's sync token; listing in full.")
        journal.set_meta("sync_token", None)
        return None
    except SyncUnsupported:
        journal.set_meta("sync_token", None)
        return None
    if spelling_changed(remote, journal, changes) or _skipped_name_changed(journal, changes):
        return None
    files = [p for p, e in changes.changed.items() if not e.is_dir]
    if fold_case and journal.has_case_variant(files, going=changes.removed):
        return None  # a letter-case twin of a synced name: only a listing tells which stays

    if journal.get_meta(SKIPPED_META) and journal.get_meta(SKIPPED_RULES_META) != rules_key(rules, fold_case):
        return None  # names skipped under other name rules: only a walk judges them again
    changed = {p: e for p, e in changes.changed.items() if not excluded(p, e.is_dir)}
    kept, skipped = filter_names(changed, rules, fold_case=fold_case, prefer=_Synced(journal))
    entries = {p: e for p, e in changed.items() if p in kept}
    removed = {p for p in changes.removed if not excluded(p, False)}
    # Deletions held back earlier (kept here: no --delete, or a guard) are judged again.
    held = journal.gone()
    removed |= {p for p, j in held.items() if p not in changed and not excluded(p, j.is_dir)}
    touched = set(changed) | removed
    for path in removed:
        touched.update(journal.under(path))
    skipped += _still_skipped(journal, changed, removed, {s.path for s in skipped})
    going = sum(1 for p, j in journal.get(sorted(touched)).items() if not j.is_dir and p not in entries)
    arriving = any(not e.is_dir for e in entries.values())
    # Every tracked file going? (The count is a pass over the journal: asked only when some go.)
    tracked = journal.count_files() if going else None
    looks_empty = tracked is not None and going >= tracked and not arriving
    view = RemoteView(entries, complete=False, removed=frozenset(removed), looks_empty=looks_empty)
    return RemoteSnapshot(view, changes.token, "sync-collection", changes.skipped + skipped, touched=touched,
                          gone=held, files=tracked)  # fmt: skip


SKIPPED_META = "skipped_remote"
SKIPPED_RULES_META = "skipped_rules"  # the name rules those names were skipped under


def rules_key(rules: NameRules, fold_case: bool) -> str:
    return f"{rules}/{'fold' if fold_case else 'exact'}"


def remember_skipped(journal: Journal, snap: RemoteSnapshot, rules: NameRules, fold_case: bool) -> None:
    """Keep the server names this computer cannot hold, so a run that lists only changes still
    reports them (a skipped file is a file not synced) instead of counting itself in sync.
    The rules are kept too: a run under other rules walks, and judges those names again."""
    rows = [[s.path, s.reason] for s in snap.skipped]
    if rows or journal.get_meta(SKIPPED_META):
        journal.set_meta(SKIPPED_META, json.dumps(rows) if rows else None)
        journal.set_meta(SKIPPED_RULES_META, rules_key(rules, fold_case) if rows else None)


def _still_skipped(journal: Journal, changed: Mapping[str, object], removed: set[str], now: set[str]) -> list[Skipped]:
    """Names skipped by earlier runs that these changes do not touch: still there, still skipped."""
    text = journal.get_meta(SKIPPED_META)
    if not text:
        return []
    try:
        rows = json.loads(text)
    except ValueError:
        return []
    out = []
    for path, reason in rows:
        touched = path in changed or path in now or any(p == path or path.startswith(p + "/") for p in removed)
        if not touched:
            out.append(Skipped(path, reason))
    return out


def _skipped_name_changed(journal: Journal, changes: Changes) -> bool:
    """Is a name skipped earlier (Unicode or letter-case twins) among the changes? A change
    list names one twin at a time: when one goes, only a listing shows the one that stays
    (and that it may now be synced)."""
    text = journal.get_meta(SKIPPED_META)
    if not text:
        return False
    try:
        skipped = {row[0] for row in json.loads(text)}
    except (ValueError, TypeError, IndexError):
        return True
    return any(p in skipped for p in changes.removed) or any(p in skipped for p in changes.changed)


def spelling_changed(remote: Remote, journal: Journal, changes: Changes) -> bool:
    """Does a changed entry reach a known local path under another server spelling (NFD
    where NFC was synced)? Then another name may share that path, which only a full
    listing can tell: a change list names one side of such a pair at a time."""
    files = {p: e for p, e in changes.changed.items() if not e.is_dir}
    known = journal.get(sorted(files))
    return any(j.remote_name != remote.server_name(files[p]) for p, j in known.items() if not j.is_dir)


def remote_snapshot(
    remote: Remote,
    journal: Journal,
    *,
    jobs: int,
    excluded: Excluded,
    rules: NameRules,
    fold_case: bool,
    incremental: bool,
    root_token: str | None | Ask,
    warnings: list[str],
) -> RemoteSnapshot:
    """The changes since the stored token when allowed and possible, else a walk.

    `root_token`: the root's token when it was already asked for in this run (a first run
    asks before creating anything), else ASK (only a walk needs it)."""
    token = None
    if journal.get_meta("sync_url") == remote.base_url:
        token = journal.get_meta("sync_token")
    # A deletion a guard refused is judged again only against a complete listing (a walk): a
    # list of changes from a server still rebuilding its index could confirm it wrongly.
    if token and incremental and not journal.has_refused():
        snap = changes_snapshot(
            remote, journal, token, excluded=excluded, rules=rules, fold_case=fold_case, warnings=warnings
        )
        if snap is not None:
            return snap
    if incremental and not token and journal.count_files() == 0:
        # A first run: the whole share in one request when the server can (else the walk).
        # Not when a journal holds files: the server's index may lag its disk by a moment,
        # and only a listing of the disk may judge deletions.
        first = initial_snapshot(remote, excluded=excluded, rules=rules, fold_case=fold_case)
        if first is not None:
            return first
    root = remote.check_root() if isinstance(root_token, Ask) else root_token
    return walk_snapshot(
        remote, jobs=jobs, excluded=excluded, rules=rules, fold_case=fold_case, token=root, synced=_Synced(journal)
    )


class _Synced:
    """The paths the journal knows, asked one at a time (only letter-case twins ask)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and bool(self.journal.get([path]))
