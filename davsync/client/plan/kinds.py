"""The words of a plan: the modes, and the kinds of action (their values are the `--json` vocabulary)."""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    PULL = "pull"  # the local folder mirrors the server
    SYNC = "sync"  # changes go both ways
    PUSH = "push"  # the server follows the local folder


class Kind(str, Enum):
    # The values are the `--json` vocabulary: add, never rename.
    MKDIR = "mkdir"
    DOWNLOAD = "download"  # new or missing locally
    UPDATE = "update"  # remote changed, local unchanged
    CONFLICT = "conflict"  # both changed: keep local as a conflict copy, place remote
    ADOPT = "adopt"  # local already equals remote: record it, transfer nothing
    REFRESH = "refresh"  # content unchanged; only the journal's stat/etag is updated
    LOCAL_MODIFIED = "locally-modified"  # local edit, not uploaded: left alone
    DELETE = "delete"  # remote deleted, local unchanged: to trash
    # Reports of a deletion not carried out (the names say where the file stays; the values are
    # the older `--json` words).
    KEPT_HERE = "deleted-remotely"  # deleted on the server, kept here (no --delete, guarded, or modified)
    FORGET = "forget"  # gone on both sides: drop the journal row
    RMDIR = "rmdir"  # remote folder gone: remove the local one if empty
    BLOCKED = "blocked"  # cannot be done (e.g. a local folder where the remote has a file)
    RENAME = "rename"  # renamed on the server in letter case only: renamed here too (case-insensitive DEST)
    UPLOAD = "upload"  # new on the server: PUT with If-None-Match: *
    UPLOAD_EDIT = "upload-edit"  # replaces the base version on the server: PUT with If-Match
    REMOTE_MKDIR = "remote-mkdir"  # MKCOL
    REMOTE_DELETE = "remote-delete"  # DELETE with If-Match (the server keeps a version)
    # DELETE of a folder whose listed content is gone by then; a WebDAV DELETE is recursive, so
    # the executor sends it only when the server lists the folder empty.
    REMOTE_RMDIR = "remote-rmdir"
    REMOTE_MOVE = "remote-move"  # a local rename, done on the server as MOVE
    LOCAL_MOVE = "local-move"  # a server rename, done here as a rename
    KEPT_ON_SERVER = "deleted-locally"  # deleted here, kept on the server (guarded, read-only, push)
    LOCAL_ONLY = "local-only"  # new here; not uploaded (read-only account)
    SERVER_CHANGED = "server-changed"  # push: the server changed since the base; not overwritten
