"""The filesystem provider: WsgiDAV's, plus live MD5s, an index kept current, and hidden temp files."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_FORBIDDEN,
    HTTP_LOCKED,
    HTTP_PRECONDITION_FAILED,
    DAVError,
    DAVErrorCondition,
    PRECONDITION_CODE_LockConflict,
)
from wsgidav.dav_provider import DAVNonCollection
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource

from ..checksums import md5_checksum
from ..osfs import fsync_dir
from ..scan import iter_tree
from .guard import PATH_LOCKS, recheck
from .index import HashIndex, Identity
from .names import TEMP_PREFIX, TEMP_SUFFIX, etag_of, is_internal_name, is_internal_path, rel_of
from .upload import valid_mtime
from .version_keeper import Who
from .versions import VersionStore

OC_NS = "http://owncloud.org/ns"
CHECKSUMS = f"{{{OC_NS}}}checksums"
CHECKSUM = f"{{{OC_NS}}}checksum"
MTIME_PROPS = ("{DAV:}lastmodified", "{DAV:}getlastmodified", "{DAV:}last_modified")
# Windows Explorer sends the source file's times this way (an HTTP date) after each PUT.
# Upstream WsgiDAV stores it as a dead property unless its emulate_win32_lastmod hotfix is
# on, and that hotfix also drops the other Win32 properties; we apply this one to the
# file's mtime and keep the others (creation/access time, attributes) as dead properties.
WIN32_MTIME = "{urn:schemas-microsoft-com:}Win32LastModifiedTime"


def xml_safe(name: str) -> bool:
    """Can XML 1.0 carry this name? (No control characters, no undecodable bytes.)"""
    return all(
        c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000" for c in name
    )


def parse_mtime(text: str | None) -> int:
    """Accept unix seconds (rclone, ownCloud) or an HTTP date (RFC 4918 getlastmodified)."""
    text = (text or "").strip()
    try:
        value = float(text)
    except ValueError:
        try:
            value = parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            raise DAVError(HTTP_BAD_REQUEST, f"Unparseable modification time: {text!r}") from None
    if not valid_mtime(value):
        raise DAVError(HTTP_BAD_REQUEST, f"Modification time out of range: {text!r}")
    return int(value)


class DavsyncFile(FileResource):
    provider: DavsyncProvider

    def __init__(self, path: str, environ: dict, file_path: str, st: os.stat_result) -> None:
        DAVNonCollection.__init__(self, path, environ)  # FileResource's own __init__ would stat again
        self._file_path = file_path
        self.file_stat = st
        self.name = os.path.basename(file_path)

    def get_etag(self) -> str:
        return etag_of(self.file_stat)

    def get_content(self) -> Any:
        return open(self._file_path, "rb", buffering=0)

    def md5(self) -> str | None:
        return self.provider.index.md5_for(rel_of(self.path), self._file_path, self.file_stat)

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        # Left out of allprop (RFC 4918 allows it): hashing is not free on a cold file.
        if not is_allprop:
            names += [CHECKSUMS, WIN32_MTIME]
        return names

    def get_property_value(self, name: str) -> Any:
        if name == CHECKSUMS:
            md5 = self.md5()
            if md5 is None:
                raise DAVError(404)
            el = etree.Element(CHECKSUMS, nsmap={"oc": OC_NS})
            etree.SubElement(el, CHECKSUM).text = md5_checksum(md5)
            return el
        if name == WIN32_MTIME:
            return util.get_rfc1123_time(self.file_stat.st_mtime)
        return super().get_property_value(name)

    def set_property_value(self, name: str, value: Any, *, dry_run: bool = False) -> Any:
        if name in (*MTIME_PROPS, WIN32_MTIME) and value is not None:
            secs = parse_mtime(value.text)
            if not dry_run:
                self.provider.set_mtime(self.path, self._file_path, secs)
            return True
        return super().set_property_value(name, value, dry_run=dry_run)

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        secs = time_stamp if isinstance(time_stamp, int) else parse_mtime(str(time_stamp))
        if not dry_run:
            self.provider.set_mtime(self.path, self._file_path, secs)
        return True

    def delete(self) -> None:
        self.provider.discard(self)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """Onto an existing file: one atomic replace (WsgiDAV would delete it, then copy).

        Otherwise WsgiDAV's way (it answers 201 for a new target): a folder target is
        deleted first (so: versioned), then copy_move_single copies atomically.
        """
        dest_fp = self.provider.file_path(dest_path)
        if not os.path.isfile(dest_fp) or os.path.islink(dest_fp):
            return False
        self.provider.copy_file(self, dest_path)
        return True  # WsgiDAV then answers 204, right for a replaced target

    def handle_move(self, dest_path: str) -> bool:
        return self.provider.move_file_over(self, dest_path)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if not is_move:
            self.provider.copy_file(self, dest_path)
            return
        known = self.provider.index.fresh_md5(rel_of(self.path), self.file_stat)
        super().copy_move_single(dest_path, is_move=is_move)
        self.provider.reindex(dest_path, {rel_of(dest_path): (Identity.of(self.file_stat), known)})

    def move_recursive(self, dest_path: str) -> None:
        self.provider.moved(
            self.path, dest_path, lambda: super(DavsyncFile, self).move_recursive(dest_path), self.environ
        )


SYNC_TOKEN = "{DAV:}sync-token"
SUPPORTED_REPORTS = "{DAV:}supported-report-set"
FEATURES = ("{urn:davsync:}bundle", "{urn:davsync:}bulk-upload")


class DavsyncFolder(FolderResource):
    provider: DavsyncProvider

    def get_etag(self) -> None:
        return None

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        # RFC 6578: sync-token must not be in allprop.
        if not is_allprop:
            names += [SYNC_TOKEN, SUPPORTED_REPORTS, *FEATURES]
        return names

    def get_property_value(self, name: str) -> Any:
        if name == SYNC_TOKEN:
            return self.provider.index.sync_token()
        if name == SUPPORTED_REPORTS:
            el = etree.Element(SUPPORTED_REPORTS, nsmap={"D": "DAV:"})
            report = etree.SubElement(etree.SubElement(el, "{DAV:}supported-report"), "{DAV:}report")
            etree.SubElement(report, "{DAV:}sync-collection")
            return el
        if name in FEATURES:  # davsync's many-files-per-request extension (bundle.py)
            from .manyfiles import feature_property

            return feature_property(name, self.environ, self.provider)
        return super().get_property_value(name)

    def get_member_names(self) -> list[str]:
        # Names with control characters cannot be written into XML: leave them out of listings.
        return [n for n in super().get_member_names() if not is_internal_name(n) and xml_safe(n)]

    def create_empty_resource(self, name: str) -> Any:
        if is_internal_name(name):
            raise DAVError(HTTP_FORBIDDEN, "Reserved name.")
        res = super().create_empty_resource(name)
        self.provider.reindex(res.path, {})
        return res

    def create_collection(self, name: str) -> None:
        if is_internal_name(name):
            raise DAVError(HTTP_FORBIDDEN, "Reserved name.")
        super().create_collection(name)
        fsync_dir(self._file_path)  # MKCOL's 201 promises the folder: a PUT inside fsyncs only its own folder
        self.provider.index.record_dir(rel_of(util.join_uri(self.path, name)))

    def delete(self) -> None:
        self.provider.discard(self)

    def handle_delete(self) -> bool:
        """With versions kept, a folder goes aside whole: one rename, however many files.

        `X-Davsync-If-Empty: 1` (davsync's client deleting a folder it saw empty): 412 when the
        folder holds anything now, an upload in progress included, so a file a phone put there
        since the client listed it is not taken along (RFC 4918's DELETE is recursive)."""
        if self.environ.get("HTTP_X_DAVSYNC_IF_EMPTY") == "1" and _has_entries(self._file_path):
            raise DAVError(HTTP_PRECONDITION_FAILED, "The folder is not empty any more; nothing was deleted.")
        if not self.provider.versioning:
            return False
        lock_man = self.provider.lock_manager
        if lock_man is not None:
            # What WsgiDAV's member-by-member deletion checks: each locked member needs its
            # token, from the lock's owner (its own depth-infinity check refuses any child lock).
            tokens = self.environ.get("wsgidav.ifLockTokenList", [])
            principal = self.environ.get("wsgidav.user_name")
            url = self.get_ref_url()
            lock_man.check_write_permission(url=url, depth="0", token_list=tokens, principal=principal)
            cond = DAVErrorCondition(PRECONDITION_CODE_LockConflict)
            locks = lock_man.storage.get_lock_list(url, include_root=False, include_children=True, token_only=False)
            for lock in locks:
                if not (lock["principal"] == principal and lock["token"] in tokens):
                    cond.add_href(lock["root"])
            if cond.hrefs:
                raise DAVError(HTTP_LOCKED, err_condition=cond)
        self.delete()
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        super().copy_move_single(dest_path, is_move=is_move)
        self.provider.index.record_dir(rel_of(dest_path))

    def move_recursive(self, dest_path: str) -> None:
        self.provider.moved(
            self.path, dest_path, lambda: super(DavsyncFolder, self).move_recursive(dest_path), self.environ
        )


class DavsyncProvider(FilesystemProvider):
    """Serves one sync root; every write through WebDAV updates the index as it happens."""

    file_class: type[DavsyncFile] = DavsyncFile  # share links substitute their own (link_fs.py)
    folder_class: type[DavsyncFolder] = DavsyncFolder

    def __init__(
        self, root: str, index: HashIndex, *, readonly: bool = False, versions: VersionStore | None = None
    ) -> None:
        super().__init__(root, readonly=readonly, fs_opts={"follow_symlinks": False})
        self.index = index
        self.versions = versions
        # Brings the index up to the disk before a first sync-collection (the server's change
        # tracker sets it; without one the index is taken as it is).
        self.sweep: Callable[[float], bool] | None = None
        self.scanned: threading.Event | None = None  # set once the first scan after start-up is complete
        self.blocks: Any = None  # the BlockStore of big files' block hashes (blocks.py), set by build_app
        self._verified_dirs: dict[str, tuple[int, int]] = {}

    @property
    def versioning(self) -> bool:
        return self.versions is not None and self.versions.enabled

    def is_readonly(self) -> bool:
        return self.readonly

    def methods_at(self, path: str) -> frozenset[str] | None:
        """The only methods OPTIONS may offer at `path` (a file link narrows them); None: no limit."""
        return None

    def _loc_to_file_path(self, path: str, environ: dict | None = None) -> str:
        """Map a URL path into ROOT; refuse anything whose real location is outside it.

        The path is already normalised (no '..'). What remains is symlinks in the folders
        above the target: each folder is checked with realpath once, then recognised by the
        (device, inode) it resolves to, which changes if any component becomes a symlink
        pointing elsewhere.

        Replaces upstream's wholesale, so its fixes never reach us: WsgiDAV 4.3.4 fixed a
        containment bug here (a sibling folder named like the root plus a suffix passed its
        prefix test); tests/test_serve_paths.py probes that case against ours.
        """
        if "\x00" in path:
            raise DAVError(HTTP_BAD_REQUEST, "NUL in path.")
        parts = [p for p in path.strip("/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise DAVError(HTTP_FORBIDDEN, "Dot segments are not allowed.")
        if any(is_internal_name(p) for p in parts):  # upload temp files and the versions area
            raise DAVError(HTTP_FORBIDDEN, "That name is reserved for davsync.")
        file_path = os.path.join(self.root_folder_path, *parts)
        if parts:
            self._check_inside(os.path.dirname(file_path))
            if os.path.islink(file_path):
                raise DAVError(HTTP_FORBIDDEN, "Symbolic links are not served.")
        return file_path

    def _check_inside(self, folder: str) -> None:
        try:
            st = os.stat(folder)
        except OSError:
            return  # a missing parent: nothing there to reach
        if self._verified_dirs.get(folder) == (st.st_dev, st.st_ino):
            return
        real = os.path.realpath(folder)
        if not self._is_equal_or_child_path(self.root_folder_path_real, real):
            raise DAVError(HTTP_FORBIDDEN, "Access outside the share is not allowed.")
        if len(self._verified_dirs) > 100_000:
            self._verified_dirs.clear()
        self._verified_dirs[folder] = (st.st_dev, st.st_ino)

    def get_resource_inst(self, path: str, environ: dict) -> Any:
        self._count_get_resource_inst += 1
        if path is None or is_internal_path(path):  # WsgiDAV asks for the root's parent as None
            return None
        fp = self._loc_to_file_path(path, environ)
        try:
            st = os.lstat(fp)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise DAVError(414, "Name too long.") from None
            raise
        if stat.S_ISLNK(st.st_mode):
            raise DAVError(HTTP_FORBIDDEN, "Symbolic links are not served.")
        if stat.S_ISDIR(st.st_mode):
            return self.folder_class(path, environ, fp)
        if stat.S_ISREG(st.st_mode):
            return self.file_class(path, environ, fp, st)
        return None

    def file_path(self, path: str) -> str:
        return self._loc_to_file_path(path)

    def ref_url_of(self, path: str) -> str:
        """The key locks and dead properties are stored under (a share link maps its own paths)."""
        return quote(self.share_path + path)

    # --- index upkeep --------------------------------------------------------

    def set_mtime(self, path: str, file_path: str, secs: int) -> None:
        """Set mtime without losing the hash: the content did not change."""
        before = os.stat(file_path)
        known = self.index.fresh_md5(rel_of(path), before)
        if before.st_mtime_ns != secs * 1_000_000_000:
            os.utime(file_path, (secs, secs))
        after = os.stat(file_path)
        self.index.record_file(rel_of(path), after, known)

    def reindex(self, path: str, known: dict[str, tuple[Identity, str | None]]) -> None:
        """Record what now exists at path (and below), reusing hashes whose content is known."""
        rel = rel_of(path)
        top = self._loc_to_file_path(path)
        items: list[tuple[str, str]] = [(rel, top)]
        if os.path.isdir(top):
            items += [(f"{rel}/{r}" if rel else r, e.path) for r, e in iter_tree(top)]
        with self.index.batch() as index:
            for item_rel, fp in items:
                if is_internal_path(item_rel):
                    continue
                st = os.lstat(fp)
                if stat.S_ISDIR(st.st_mode):
                    index.record_dir(item_rel)
                    continue
                md5 = None
                if item_rel in known:
                    ident, md5 = known[item_rel]
                    if (ident.size, ident.mtime_ns) != (st.st_size, st.st_mtime_ns):
                        md5 = None
                elif st.st_size == 0:
                    md5 = "d41d8cd98f00b204e9800998ecf8427e"
                index.record_file(item_rel, st, md5)

    # --- changing the share: locked, re-checked, versioned ----------------------

    @contextmanager
    def guarded(self, environ: dict, *paths: str) -> Iterator[None]:
        """Hold the paths' locks; re-check If-Match/If-None-Match if the request's own path is one."""
        rels = [rel_of(p) for p in paths]
        with PATH_LOCKS.hold(*(self._loc_to_file_path(p) for p in paths)):
            target = environ.get("PATH_INFO")
            if target is not None and rel_of(target) in rels:
                recheck(environ, self._loc_to_file_path(target))
            yield

    def share_rel(self, rel: str) -> str:
        """A path as the versions record it: relative to the whole share (a share link maps its own)."""
        return rel

    @staticmethod
    def who(environ: dict) -> Who:
        return Who(environ.get("wsgidav.auth.user_name") or "anonymous", environ.get("REQUEST_METHOD", "?"))

    def replace(self, src: str, dest: str, rel: str, environ: dict) -> bool:
        """Rename src over dest (keeping dest as a version); True if dest existed. Caller holds the lock."""
        if self.versions is not None:
            return self.versions.replace_file(src, dest, self.share_rel(rel), self.who(environ))[0]
        existed = os.path.lexists(dest)
        os.replace(src, dest)
        fsync_dir(os.path.dirname(dest))
        return existed

    def place_upload(self, path: str, environ: dict) -> Callable[[str, str], bool]:
        """What upload.receive calls once the body is complete and verified."""

        def place(tmp: str, dest: str) -> bool:
            with self.guarded(environ, path):
                return self.replace(tmp, dest, rel_of(path), environ)

        return place

    def discard(self, res: Any) -> None:
        """DELETE (or an overwrite's removal of the target): into the versions area when kept."""
        rel = rel_of(res.path)
        with self.guarded(res.environ, res.path):
            if self.versioning:
                assert self.versions is not None
                self.versions.remove(self.share_rel(rel), res._file_path, self.who(res.environ), replaced=False)
            elif res.is_collection:
                shutil.rmtree(res._file_path)
            else:
                os.unlink(res._file_path)
            if not self.versioning:
                fsync_dir(os.path.dirname(res._file_path))
        res.remove_all_properties(recursive=True)
        res.remove_all_locks(recursive=True)
        self.index.forget(rel)

    def copy_file(self, res: DavsyncFile, dest_path: str) -> None:
        """COPY of one file: copied beside the target, then renamed over it (atomic, versioned)."""
        dest_fp = self._loc_to_file_path(dest_path)
        known = self.index.fresh_md5(rel_of(res.path), res.file_stat)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=os.path.dirname(dest_fp))
        os.close(fd)
        try:
            shutil.copy2(res._file_path, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            old = self.get_resource_inst(dest_path, res.environ)
            with self.guarded(res.environ, res.path, dest_path):
                self.replace(tmp, dest_fp, rel_of(dest_path), res.environ)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        if old is not None:
            old.remove_all_properties(recursive=True)
            old.remove_all_locks(recursive=True)
        if self.prop_manager:
            dest_res = self.get_resource_inst(dest_path, res.environ)
            self.prop_manager.copy_properties(res.get_ref_url(), dest_res.get_ref_url(), res.environ)
        self.reindex(dest_path, {rel_of(dest_path): (Identity.of(res.file_stat), known)})

    def move_file_over(self, res: DavsyncFile, dest_path: str) -> bool:
        """MOVE of a file onto an existing file: one rename over it, the old one kept as a version.

        Anything else (no target, a folder involved) goes WsgiDAV's way: delete the
        target (which versions it), then move_recursive.
        """
        dest_fp = self._loc_to_file_path(dest_path)
        if not os.path.isfile(dest_fp) or os.path.islink(dest_fp):
            return False
        old = self.get_resource_inst(dest_path, res.environ)

        def do_move() -> None:
            self.replace(res._file_path, dest_fp, rel_of(dest_path), res.environ)
            if old is not None:
                old.remove_all_properties(recursive=True)
                old.remove_all_locks(recursive=True)
            if self.prop_manager:
                self.prop_manager.move_properties(
                    res.get_ref_url(), old.get_ref_url() if old else dest_path, with_children=False,
                    environ=res.environ,
                )  # fmt: skip

        self.moved(res.path, dest_path, do_move, res.environ)
        return True

    def moved(self, src: str, dest: str, do_move: Any, environ: dict | None = None) -> None:
        src_rel, dest_rel = rel_of(src), rel_of(dest)
        known: dict[str, tuple[Identity, str | None]] = {}
        src_fp = self._loc_to_file_path(src)
        entries = [(src_rel, src_fp)]
        if os.path.isdir(src_fp):
            entries += [(f"{src_rel}/{r}" if src_rel else r, e.path) for r, e in iter_tree(src_fp)]
        for item_rel, fp in entries:
            try:
                st = os.lstat(fp)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            md5 = self.index.fresh_md5(item_rel, st)
            known[dest_rel + item_rel[len(src_rel):]] = (Identity.of(st), md5)
        with self.guarded(environ or {}, src, dest):
            do_move()
            # the 201 promises both names: the old one gone, the new one there, after a power cut too
            fsync_dir(os.path.dirname(src_fp))
            fsync_dir(os.path.dirname(self._loc_to_file_path(dest)))
        self.index.forget(src_rel)
        self.reindex(dest, known)


def _has_entries(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False
