"""The app's commands: the dashboard and the tray call these; the runners do the syncing.

Everything a person can do goes through here, so the web layer stays a thin translation of
HTTP into calls and the commands are testable without a browser.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import keyring.errors

from ..client import credentials
from ..client.doctor import Check, run_checks
from ..client.filters import folder_line
from ..client.transport import ConnectionSettings
from . import files, picker, sharing, store
from .config import AppConfig, ConfigError, FolderPair
from .discover import LanServers
from .runner import NOT_YET, PairRunner
from .status import PairStatus, StatusHub
from .words import plain

MUST_PASS = ("reachable", "authentication", "connection")  # doctor checks without which a pair cannot work


class CommandError(Exception):
    """A command the person gave cannot be done; the message says why and what to do."""


def _status_for(pair: FolderPair) -> PairStatus:
    return PairStatus(id=pair.id, url=pair.url, local=pair.local, mode=pair.mode, interval=pair.interval,
                      paused=pair.paused, pair_paused=pair.paused)  # fmt: skip


class App:
    def __init__(
        self,
        config: AppConfig,
        state_dir: Path,
        hub: StatusHub | None = None,
        *,
        check: Callable[[ConnectionSettings], list[Check]] = run_checks,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.hub = hub or StatusHub()
        self.all_paused = threading.Event()
        self.runners: dict[str, PairRunner] = {}
        self._check = check
        self._lock = threading.RLock()  # one command at a time changes config and runners
        self.quit = threading.Event()
        self.lan = LanServers()  # servers announcing themselves, for the Add form (started when it asks)
        self.tray_state: Callable[[], dict[str, object]] = _no_tray  # the tray's, once one runs

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            for pair in self.config.pairs:
                self._start_runner(pair)

    def _start_runner(self, pair: FolderPair) -> None:
        status = _status_for(pair)
        store.load_into(self.state_dir, status)
        self.hub.add(status)
        runner = PairRunner(pair, self.hub, self.state_dir, self._password, self.all_paused)
        self.runners[pair.id] = runner
        runner.start()

    def _password(self, pair: FolderPair) -> str | None:
        return credentials.load_password(pair.url, pair.user) if pair.user else None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every pair's loop, waiting at most `timeout` in all: every run in flight is told
        at once, so one slow pair (a server that does not answer) does not hold up the others."""
        self.hub.close()  # first: open dashboards learn at once that the app is going away
        self.lan.stop()
        with self._lock:
            runners = list(self.runners.values())
        deadline = time.monotonic() + timeout
        for r in runners:
            r.stop(timeout=0)
        for r in runners:
            r.join(max(0.0, deadline - time.monotonic()))

    def reload_if_changed(self) -> bool:
        """Pick up a hand edit of the config file: start new pairs, restart changed ones, stop
        removed ones. A broken file changes nothing and says why on the dashboard."""
        with self._lock:
            if not self.config.changed_on_disk():
                return False
            try:
                fresh = AppConfig.load(self.config.path)
            except ConfigError as e:
                self.config.stamp = self.config.file_stamp()  # say it once per edit
                self.hub.set_notice(f"{e} The folder pairs from before the edit keep running.")
                return False
            old = {p.id: p for p in self.config.pairs}
            new = {p.id: p for p in fresh.pairs}
            self.config = fresh
            for pid, pair in old.items():
                if new.get(pid) != pair:
                    self.runners.pop(pid).stop()
                    self.hub.remove(pid)
            for pid, pair in new.items():
                if old.get(pid) != pair:
                    self._start_runner(pair)
            self.hub.set_notice("")
            return True

    def request_quit(self) -> None:
        self.quit.set()

    # --- pairs --------------------------------------------------------------------

    def _runner(self, pair_id: str) -> PairRunner:
        runner = self.runners.get(pair_id)
        if runner is None:
            raise CommandError(f"there is no folder pair {pair_id!r} (it may have been removed).")
        return runner

    def pair_from_form(self, form: dict[str, Any], base: FolderPair | None = None) -> FolderPair:
        """A FolderPair from the dashboard's form fields, checked. Raises CommandError."""
        known = {"url", "local", "user", "mode", "interval", "delete", "excludes", "ca_cert", "insecure", "jobs"}
        values = {k: v for k, v in form.items() if k in known}
        if isinstance(values.get("excludes"), str):
            values["excludes"] = [x for x in values["excludes"].splitlines() if x.strip()]
        values["excludes"] = tuple(values.get("excludes") or (base.excludes if base else ()))
        for key in ("interval",):
            if key in values and values[key] in ("", None):
                del values[key]
        try:
            if "interval" in values:
                values["interval"] = float(values["interval"])
            if "jobs" in values:
                values["jobs"] = int(values["jobs"])
        except (TypeError, ValueError):
            raise CommandError("the interval and jobs must be numbers.") from None
        try:
            pair = replace(base, **values) if base else FolderPair(**{"url": "", "local": "", **values})
            pair = pair.validated()
        except ConfigError as e:
            raise CommandError(str(e)) from None
        except TypeError as e:
            raise CommandError(f"bad folder pair settings: {e}.") from None
        if pair.mode in NOT_YET:
            raise CommandError(NOT_YET[pair.mode])
        return pair

    def check_pair(self, pair: FolderPair, password: str | None) -> list[dict[str, Any]]:
        """The doctor's checks and a local-folder check, as the Add form shows them."""
        if pair.user and not password:
            password = credentials.load_password(pair.url, pair.user)
        conn = ConnectionSettings(pair.url, pair.user or None, password, pair.ca_cert or None, pair.insecure, jobs=1)
        checks = [{"name": c.name, "ok": c.ok, "detail": plain(c.detail),
                   "required": c.blocking or c.name.split(" ")[0] in MUST_PASS} for c in self._check(conn)]  # fmt: skip
        checks.append(_local_check(pair.dest))
        return checks

    def _check_login(self, pair: FolderPair, password: str | None) -> None:
        """New credentials are tried on the server before they replace the old ones."""
        failed = [c for c in self.check_pair(pair, password) if c["required"] and not c["ok"]]
        if failed:
            raise CommandError(f"{failed[0]['name']}: {failed[0]['detail']} Nothing was changed.")

    def add_pair(self, form: dict[str, Any]) -> tuple[FolderPair | None, list[dict[str, Any]]]:
        """Check, and save only when the checks that matter pass. Returns (pair or None, checks)."""
        pair = self.pair_from_form(form)
        password = str(form.get("password") or "") or None
        with self._lock:
            if self.config.get(pair.id) is not None:
                raise CommandError(f"{pair.local} is already synced with {pair.url}.")
            clash = self.config.clash(pair)
            if clash:
                raise CommandError(clash)
        checks = self.check_pair(pair, password)
        if not form.get("save") or not all(c["ok"] for c in checks if c["required"]):
            return None, checks
        with self._lock:
            self._store(pair, password)
            self._start_runner(pair)
        return pair, checks

    def _store(self, pair: FolderPair, password: str | None) -> None:
        """Keep the pair's new password (if one was given) and the pair in the config; a config
        that cannot be written is a CommandError (the dashboard shows it), the pair left as it was."""
        if pair.user and password:
            _save_password(pair, password)  # (the password store's refusals are CommandErrors already)
        try:
            self.config.upsert(pair)
        except ConfigError as e:
            raise CommandError(str(e)) from None
        except OSError as e:
            raise self._not_saved(e) from None

    def _not_saved(self, e: OSError) -> CommandError:
        return CommandError(
            f"Could not save the settings to {self.config.path} ({e.strerror or e}): make sure that "
            "file and its folder can be written, then try again; the settings were not saved."
        )

    def edit_pair(self, pair_id: str, form: dict[str, Any]) -> FolderPair:
        with self._lock:
            old = self.config.get(pair_id)
            if old is None:
                raise CommandError(f"there is no folder pair {pair_id!r}.")
            # identity stays; remove and add to move
            form = {k: v for k, v in form.items() if k not in ("url", "local")}
            pair = self.pair_from_form(form, base=old)
            password = str(form.get("password") or "") or None
            if pair.user and password or pair.user != old.user:
                self._check_login(pair, password)
            self._store(pair, password)
            self._runner(pair_id).stop()
            del self.runners[pair_id]
            self._start_runner(pair)
        return pair

    def remove_pair(self, pair_id: str) -> None:
        """Stop syncing this pair. The local folder and its files stay as they are."""
        with self._lock:
            runner = self._runner(pair_id)
            try:
                pair = self.config.remove(pair_id)  # first: a config that cannot be written keeps the pair running
            except OSError as e:
                raise self._not_saved(e) from None
            runner.stop()
            del self.runners[pair_id]
            self.hub.remove(pair_id)
            store.forget(self.state_dir, pair_id)
            if (
                pair is not None
                and pair.user
                and not any(p.url == pair.url and p.user == pair.user for p in self.config.pairs)
            ):
                try:
                    credentials.delete_password(pair.url, pair.user)
                except (credentials.CredentialStoreError, keyring.errors.KeyringError):
                    pass  # no store: nothing to forget

    # --- running --------------------------------------------------------------------

    def sync_now(self, pair_id: str | None = None) -> dict[str, str]:
        runners = [self._runner(pair_id)] if pair_id else list(self.runners.values())
        for r in runners:
            r.sync_now()
        if runners and all(r.paused for r in runners):
            return {"message": "Paused: nothing is synced until you resume."}
        return {"message": ""}

    def set_paused(self, paused: bool, pair_id: str | None = None) -> None:
        with self._lock:
            if pair_id is None:
                if paused:
                    self.all_paused.set()
                else:
                    self.all_paused.clear()
                self.hub.set_all_paused(paused)
                for r in self.runners.values():
                    r.pause_changed()
                return
            runner = self._runner(pair_id)
            pair = self.config.get(pair_id)
            if pair is not None and pair.paused != paused:
                self.config.upsert(replace(pair, paused=paused))
                runner.pair = replace(runner.pair, paused=paused)
            runner.set_paused(paused)

    # --- the folder: conflicts, trash ---------------------------------------------------

    def resolve(self, pair_id: str, local_copy: str, choice: str) -> str:
        runner = self._runner(pair_id)
        status = self.hub.pair(pair_id)
        conflict = next((c for c in (status.conflicts if status else []) if c.get("local_copy") == local_copy), None)
        if conflict is None:
            raise CommandError("that conflict is no longer listed (resolved already?).")
        with runner.folder_lock():
            try:
                message = files.resolve_conflict(runner.pair.dest, conflict, choice)
            except files.ActionError as e:
                raise CommandError(str(e)) from None

        uploads = choice == "mine" and runner.pair.mode == "sync"

        def drop(p: PairStatus) -> None:
            p.conflicts = [c for c in p.conflicts if c.get("local_copy") != local_copy]
            if uploads:  # shown as "uploading" until a run after this confirms the server has it
                p.uploading = [u for u in p.uploading if u["path"] != conflict["path"]]
                p.uploading.append({"path": conflict["path"], "since": time.time()})
            p.recent.append({"time": time.time(), "what": f"conflict resolved ({choice})",
                             "path": conflict["path"]})  # fmt: skip
            store.save(self.state_dir, p)

        self.hub.update(pair_id, drop)
        if uploads:
            runner.sync_now()
        return message

    def resolve_many(self, pair_id: str, local_copies: list[str], choice: str) -> str:
        """One choice for several conflicts (the page's bulk action); says how many, and any that failed."""
        if choice not in ("mine", "theirs", "both"):
            raise CommandError(f"unknown choice {choice!r}: use mine, theirs or both.")
        done, failed = 0, []
        for copy in dict.fromkeys(local_copies):
            try:
                self.resolve(pair_id, copy, choice)
                done += 1
            except CommandError as e:
                failed.append(f"{copy}: {e}")
        whose = {"mine": "your version", "theirs": "the server's version", "both": "both versions"}[choice]
        message = f"Kept {whose} for {done} file{'' if done == 1 else 's'}."
        if failed:
            message += f" Not done for {len(failed)}: {'; '.join(failed[:3])}"
        return message

    def _conflict_file(self, pair_id: str, rel: str) -> Path:
        """A file of a listed conflict (either version): the page previews and opens only these."""
        status = self.hub.pair(pair_id)
        listed = {x for c in (status.conflicts if status else []) for x in (c.get("path"), c.get("local_copy")) if x}
        if rel not in listed:
            raise CommandError("that file is not part of a listed conflict (resolved already?).")
        return files.inside(self._runner(pair_id).pair.dest, rel)

    def preview(self, pair_id: str, rel: str) -> dict[str, Any]:
        try:
            return files.preview(self._conflict_file(pair_id, rel))
        except files.ActionError as e:
            raise CommandError(str(e)) from None

    def open_file(self, pair_id: str, rel: str) -> None:
        try:
            files.open_file(self._conflict_file(pair_id, rel))
        except files.ActionError as e:
            raise CommandError(str(e)) from None

    def decide_deletions(self, pair_id: str, choice: str) -> str:
        """What a person chose for the deletions a guard held: go ahead, or put them back."""
        runner = self._runner(pair_id)
        status = self.hub.pair(pair_id)
        held = next((e for e in (status.errors if status else []) if e.get("path") == "(deletions)"), None)
        if held is None:
            raise CommandError("there are no deletions held back for this folder pair (any more).")
        if choice not in ("accept", "restore") or not held.get(f"can_{choice}"):
            raise CommandError("that choice cannot help here; follow the advice shown with the deletions.")
        if runner.paused or not runner.run_once_with(choice):
            raise CommandError("the folder pair is paused or not running yet; resume it and try again.")
        return ("Going ahead: the next check carries out the deletions." if choice == "accept"
                else "Putting them back: the next check copies each missing file from the other side.")  # fmt: skip

    def trash(self, pair_id: str) -> list[dict[str, Any]]:
        return files.list_trash(self._runner(pair_id).pair.dest)

    def restore(self, pair_id: str, item: str) -> str:
        runner = self._runner(pair_id)
        with runner.folder_lock():
            try:
                return files.restore(runner.pair.dest, item)
            except files.ActionError as e:
                raise CommandError(str(e)) from None

    def open_folder(self, pair_id: str, rel: str = "") -> None:
        dest = self._runner(pair_id).pair.dest
        try:
            target = files.inside(dest, rel) if rel else None
            files.open_folder(target.parent if target is not None else dest, target)
        except files.ActionError as e:
            raise CommandError(str(e)) from None

    # --- the server: browse, share links, versions (sharing.py) ----------------------------

    @contextmanager
    def _server(self, pair_id: str) -> Iterator[sharing.Server]:
        pair = self._runner(pair_id).pair
        try:
            server = sharing.Server(pair, self._password(pair))
        except sharing.SharingError as e:
            raise CommandError(str(e)) from None
        try:
            yield server
        except sharing.SharingError as e:
            raise CommandError(str(e)) from None
        finally:
            server.close()

    def browse(self, pair_id: str, folder: str) -> dict[str, Any]:
        with self._server(pair_id) as server:
            return sharing.listing(server, folder)

    def links(self, pair_id: str) -> dict[str, Any]:
        with self._server(pair_id) as server:
            return {"links": sharing.links(server)}

    def share(self, pair_id: str, folder: str, form: dict[str, Any]) -> dict[str, Any]:
        with self._server(pair_id) as server:
            return sharing.create_link(server, folder, form)

    def revoke_link(self, pair_id: str, link_id: str) -> dict[str, Any]:
        with self._server(pair_id) as server:
            return {"message": sharing.revoke_link(server, link_id)}

    def versions(self, pair_id: str, path: str) -> dict[str, Any]:
        with self._server(pair_id) as server:
            return {"path": path, "versions": sharing.versions(server, path)}

    def restore_version(self, pair_id: str, path: str, vid: str) -> dict[str, Any]:
        with self._server(pair_id) as server:
            message = sharing.restore_version(server, path, vid)
        self._runner(pair_id).sync_now()  # bring it down now rather than at the next check
        return {"message": message}

    # --- adding a pair: servers found, the server's folders, the local folder --------------------

    def remote_folders(self, form: dict[str, Any]) -> dict[str, Any]:
        """The folders in one folder of a server not yet a pair (the Add form's picker), with the
        form's login (or the one stored for that server and user)."""
        url, user = str(form.get("url") or "").strip(), str(form.get("user") or "").strip()
        password = str(form.get("password") or "") or (credentials.load_password(url, user) if user and url else None)
        ca_cert, insecure = str(form.get("ca_cert") or ""), bool(form.get("insecure"))
        probe = FolderPair(url, "", user=user, ca_cert=ca_cert, insecure=insecure)
        try:
            server = sharing.Server(probe, password)
        except sharing.SharingError as e:
            raise CommandError(str(e)) from None
        try:
            found = sharing.listing(server, str(form.get("path") or ""))
        except sharing.SharingError as e:
            raise CommandError(str(e)) from None
        finally:
            server.close()
        # each with the exclude line that skips it when this folder is the pair's (selective sync)
        folders = [e | {"skip": folder_line(str(e["name"]))} for e in found["entries"] if e["is_dir"]]
        return {"base": server.remote.base_url, "folder": found["folder"], "folders": folders,
                "files": len(found["entries"]) - len(folders)}  # fmt: skip

    def pick_local_folder(self, start: str) -> dict[str, Any]:
        """The system's folder dialog; {"path": None} on Cancel, "available": False with none."""
        if not picker.available():
            return {"available": False, "path": None}
        try:
            return {"available": True, "path": picker.pick(start)}
        except picker.PickerError as e:
            raise CommandError(str(e)) from None

    def check_local(self, path: str) -> dict[str, Any]:
        """A typed local folder, judged as the Add form's checks judge it."""
        if not path.strip():
            return {"ok": False, "detail": "Give the folder on this PC to keep in sync."}
        dest = Path(path.strip()).expanduser()
        if not dest.is_absolute():
            return {"ok": False, "detail": f"{path} is not a full path: start it at a drive or at /."}
        check = _local_check(dest)
        return {"ok": check["ok"], "detail": check["detail"]}


def _no_tray() -> dict[str, object]:
    return {"backend": None, "running": False, "has_menu": False, "menu": [], "title": "", "error": None}


def _save_password(pair: FolderPair, password: str) -> None:
    try:
        credentials.save_password(pair.url, pair.user, password)
    except credentials.NoCredentialStore:
        raise CommandError(plain(credentials.NO_STORE)) from None
    except (credentials.CredentialStoreError, keyring.errors.KeyringError, OSError):
        # (the library's own message speaks to command-line users: not shown here)
        raise CommandError(
            "The system's password store refused to keep the password: unlock it (on Linux: GNOME Keyring "
            "or KWallet) and try again; nothing was saved."
        ) from None


def _local_check(dest: Path) -> dict[str, Any]:
    name = "local folder"
    if dest.is_dir():
        try:
            n = sum(1 for p in dest.iterdir() if p.name != ".davsync")
        except OSError as e:
            return {"name": name, "ok": False, "detail": f"cannot read {dest}: {e.strerror}", "required": True}
        probe = dest / ".davsync-write-test"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            return {"name": name, "ok": False, "detail": f"cannot write in {dest}: {e.strerror}", "required": True}
        detail = "empty, writable" if n == 0 else (
            f"holds {n} item(s); files equal to the server's are adopted, different ones are never overwritten"
        )
        return {"name": name, "ok": True, "detail": detail, "required": True}
    if dest.exists():
        return {"name": name, "ok": False, "detail": f"{dest} is a file, not a folder", "required": True}
    parent = next((p for p in dest.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        return {"name": name, "ok": False, "detail": f"no existing folder above {dest}", "required": True}
    return {"name": name, "ok": True, "detail": f"{dest} will be created", "required": True}
