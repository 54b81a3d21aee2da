"""Every WsgiDAV and cheroot internal the server relies on, in one place, with why.

WsgiDAV and cheroot are used through their public classes, but fixing their bugs and keeping the
server fast needs a few private names and undocumented behaviours. An upgrade may rename or
change any of them silently; tests/test_upstream_contract.py checks each entry here (that the
name exists, its signature, the environ keys it sets) and, where we copy, skip or replace
upstream code, a fingerprint of that code: a changed fingerprint means "read the upstream change
and adapt our side", then update the fingerprint here.

The list is exact: `used_in` names every server module that uses the name, and the contract test
fails on a private upstream name, a `wsgidav.*` environ key or an explicit upstream `__init__`
call in a module not listed here. Where we work around an upstream bug, the code says which.

Pinned against WsgiDAV 4.4.0 and cheroot 11.1.2.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reliance:
    """One internal we use: where it lives upstream, where we use it, and why we need it."""

    owner: str  # "module:Class" or "module"
    name: str  # attribute, method or environ key
    used_in: tuple[str, ...]  # files under davsync/server that use it
    why: str


RELIANCES: tuple[Reliance, ...] = (
    # --- wsgidav.request_server.RequestServer (we subclass it: request_server.py) ---------------
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_davProvider",
        ("request_server.py",),
        "The provider of the request: the public API has no accessor for it.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_fail",
        ("request_server.py",),
        "Raises a DAVError with upstream's logging and precondition codes; our do_* overrides "
        "answer errors exactly like the methods they replace.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_evaluate_if_headers",
        ("request_server.py",),
        "If/If-Match/If-None-Match and lock-token checks: our PUT and PROPFIND keep upstream's.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_copy_or_move",
        ("request_server.py",),
        "Upstream bug (4.4): it unquotes the Destination URL twice. destination.py re-binds this "
        "function's globals `unquote` and `urlparse`; its body is otherwise upstream's.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_possible_methods",
        ("request_server.py",),
        "The methods __call__ dispatches: REPORT is added to it.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "allow_propfind_infinite",
        ("request_server.py",),
        "Our setting for Depth: infinity replaces upstream's always-True default.",
    ),
    # --- wsgidav.fs_dav_provider -------------------------------------------------------------------
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "_loc_to_file_path",
        ("provider.py",),
        "Overridden wholesale: ours refuses symlinks in every folder above the target and caches "
        "the check. Upstream fixed a containment bug here in 4.3.4 (a sibling folder named like "
        "the root plus a suffix); our override never receives such fixes, so the path-jail tests "
        "probe that case (tests/test_serve_paths.py) and the fingerprint flags later changes.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "_is_equal_or_child_path",
        ("provider.py",),
        "The containment test our _loc_to_file_path uses on real paths.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "root_folder_path_real",
        ("provider.py",),
        "The realpath of the root, set by upstream's __init__.",
    ),
    Reliance(
        "wsgidav.dav_provider:DAVProvider",
        "_count_get_resource_inst",
        ("provider.py",),
        "Upstream's statistics counter, kept up to date by our get_resource_inst.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FileResource",
        "_file_path",
        ("provider.py",),
        "Where a resource's file or folder lies on disk (FileResource and FolderResource keep it "
        "here): DavsyncFile sets it, and deletes, copies and moves read it.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FileResource",
        "__init__",
        ("provider.py",),
        "Skipped: it stats the file again though get_resource_inst just did (one stat per file "
        "in a listing). DavsyncFile sets the same attributes itself: _file_path, file_stat, name.",
    ),
    # --- the resolver (app.py _Resolver replaces wsgidav.request_resolver.RequestResolver) --------
    Reliance(
        "wsgidav.request_resolver:RequestResolver",
        "__call__",
        ("app.py",),
        "Stock WsgiDAV hard-codes its RequestServer; _Resolver makes ours, and closes app_iter as upstream does.",
    ),
    Reliance(
        "wsgidav.dir_browser._dir_browser:WsgiDavDirBrowser",
        "_get_context",
        ("link_gate.py",),
        "The folder page's template values: a link's page names the shared folder in its heading, "
        "where upstream shows the href (which holds the token).",
    ),
    # --- WSGI environ keys -----------------------------------------------------------------------
    Reliance(
        "wsgidav", "wsgidav.provider", ("app.py", "bundle.py", "resumable.py", "blocks.py", "deltapush.py"),
        "Set by WsgiDAVApp: the provider for the path.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.user_name",
        ("request_server.py", "provider.py", "link_gate.py"),
        "The user upstream's lock and property managers record (RequestServer.__call__ sets it); "
        "share links set it to the link's own name.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.auth.user_name",
        ("auth.py", "provider.py", "link_gate.py", "bundle.py", "resumable.py"),
        "Set by HTTPAuthenticator after a login; auth.py sets it after its own Digest check, and "
        "share links set it to a link's own name. The bulk upload checks locks for this principal; "
        "a resumable upload belongs to it.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.conditions.if",
        ("request_server.py", "bundle.py"),
        "Set by util.parse_if_header_dict: our PUT and the bulk upload parse the If header only once.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.ifLockTokenList",
        ("request_server.py", "provider.py", "bundle.py", "resumable.py"),
        "The lock tokens from the If header, for lock_manager.write_transaction in our PUT, the lock check "
        "of each bulk-upload member and a resumable upload's commit.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.all_input_read",
        ("request_server.py", "link_gate.py", "bundle.py", "resumable.py", "deltapush.py"),
        "Tells WsgiDAVApp the body was consumed, so it does not drain the input again.",
    ),
    # --- cheroot --------------------------------------------------------------------------------
    Reliance(
        "cheroot.server:HTTPConnection",
        "communicate",
        ("http.py",),
        "StickyConnection calls it in a loop: it serves one request and returns whether the "
        "connection stays open (an undocumented contract).",
    ),
    Reliance(
        "cheroot.server:HTTPConnection",
        "rfile",
        ("http.py",),
        "The buffered reader: has_data() says whether the next request is already read in.",
    ),
    Reliance(
        "cheroot.makefile:StreamReader",
        "has_data",
        ("http.py",),
        "Whether buffered bytes are waiting, without touching the socket.",
    ),
    Reliance(
        "cheroot.server:HTTPServer",
        "ConnectionClass",
        ("app.py",),
        "The class cheroot makes per connection: StickyConnection is installed through it.",
    ),
    # --- cheroot: file bodies sent by the kernel (sendfile.py) -----------------------------------
    Reliance(
        "cheroot.server:HTTPServer",
        "gateway",
        ("sendfile.py",),
        "The gateway class cheroot makes per request: SendfileGateway is installed through it.",
    ),
    Reliance(
        "cheroot.wsgi:Gateway",
        "remaining_bytes_out",
        ("sendfile.py",),
        "The Content-Length the application declared: how many bytes sendfile sends.",
    ),
    Reliance(
        "cheroot.wsgi:Gateway",
        "started_response",
        ("sendfile.py",),
        "Whether start_response ran: the file is sent raw only after it did.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "sent_headers",
        ("sendfile.py",),
        "False until the first body byte: a file body is sent raw only when it is the whole body.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "ensure_headers_sent",
        ("sendfile.py",),
        "Writes the status line and headers (through wfile, which flushes all of it) before the raw file.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "chunked_write",
        ("sendfile.py",),
        "A chunked response needs cheroot's framing: never sent raw (guard).",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "close_connection",
        ("sendfile.py",),
        "Set when a file shrank while sent, so the client sees the end instead of waiting.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "conn",
        ("sendfile.py",),
        "The connection, for its socket.",
    ),
    Reliance(
        "cheroot.server:HTTPConnection",
        "socket",
        ("sendfile.py",),
        "The client socket (an SSLSocket under TLS): sendfile and sendall go to it directly.",
    ),
    # --- cheroot's connection manager (connguard.py) ---------------------------------------------
    Reliance(
        "cheroot.server:HTTPServer",
        "_connections",
        ("connguard.py",),
        "The ConnectionManager prepare() makes: a connection whose request head is unfinished is "
        "parked in its selector, and the idle one that waited longest is closed when too many are open.",
    ),
    Reliance(
        "cheroot.connections:ConnectionManager",
        "_selector",
        ("connguard.py",),
        "Its thread-safe selector: registered into directly (put() would reset last_used, the head's "
        "deadline, and hand a partly buffered head straight back to process_conn).",
    ),
    # --- wsgidav.lock_man.lock_storage (lockstore.py) --------------------------------------------
    Reliance(
        "wsgidav.lock_man.lock_storage:LockStorageDict",
        "_dict",
        ("lockstore.py",),
        "The stored locks (token -> lock dict with 'owner' bytes): read once at open to drop locks "
        "whose owner no answer could render.",
    ),
)

# Where our code copies, skips or replaces upstream code, its fingerprint (see source_fingerprint).
FINGERPRINTS: dict[str, str] = {
    "wsgidav.request_server:RequestServer._copy_or_move": "abf4177b964d67c3",
    "wsgidav.request_server:RequestServer._evaluate_if_headers": "75831b992d505bd3",
    # request_server.py: do_PROPPATCH sets Depth 0 before upstream's, which refuses any other Depth.
    "wsgidav.request_server:RequestServer.do_PROPPATCH": "dd60c718b07f118b",
    "wsgidav.fs_dav_provider:FilesystemProvider._loc_to_file_path": "9c571849abbcdbfa",
    "wsgidav.fs_dav_provider:FileResource.__init__": "d3149891456ace0c",
    "wsgidav.request_resolver:RequestResolver.__call__": "b1266662739bb708",
    "cheroot.server:HTTPConnection.communicate": "cf09216d770b907c",
    # connguard.py: new and readable connections reach process_conn (unregistered first), put()
    # parks idle ones, _expire closes those whose last_used is older than the server's timeout.
    "cheroot.connections:ConnectionManager._run": "6fcca31c1292f216",
    "cheroot.connections:ConnectionManager.put": "0dd3e24ed8671df9",
    "cheroot.connections:ConnectionManager._expire": "ccc41c292cbf7dcc",
    "cheroot.server:HTTPServer.process_conn": "18eb32db76ab765c",
    # connguard.py DeferredTLS replaces wrap (no handshake there) and does the handshake itself.
    "cheroot.ssl.builtin:BuiltinSSLAdapter.wrap": "992906516442c198",
    # http.py BoundedDrainRequest: send_headers drains `rfile.remaining` unless close_connection is set.
    "cheroot.server:HTTPRequest.send_headers": "d88188af39e6d88d",
    # sendfile.py: the body is iterated inside respond (so FileBody may write raw there), and close() is called.
    "cheroot.wsgi:Gateway.respond": "f9e847ca3e079a55",
    # sendfile.py: a write returns only once everything is on the socket (headers before the raw file).
    "cheroot.makefile:BufferedWriter.write": "c7706fb325c0d831",
    "cheroot.makefile:BufferedWriter._flush_unlocked": "0b6d0539c4e50952",
    # Not the server's, the command line's (davsync/typer_coerce.py): where typer builds a converter
    # (typer.core.build_runtime_param, by its global name), and the adapters whose results ours
    # reproduce (tests/test_cli_startup.py also compares both on every parameter).
    # (tests/test_cli_startup.py compares both on every parameter).
    "typer.core:_TyperParameter.get_runtime_param": "71533cbd759963f1",
    "typer._coercion:build_runtime_param": "9bbd47b06446d0a4",
    "typer._coercion:RuntimeParam.coerce": "75f3a2d3d4af1833",
    "typer._adapters:build_leaf_adapter": "a8f9a17b066c1194",
    "typer._adapters:_parse_cli_str": "09bac30372c7ba29",
    "typer._adapters:_parse_cli_bool": "767218573d314a02",
    "typer._adapters:_build_number_adapter": "9982971f828778b1",
}

# Parameters our calls and overrides depend on (names, in order).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "wsgidav.request_server:RequestServer._fail": (
        "self", "value", "context_info", "src_exception", "err_condition", "is_head_method"),
    "wsgidav.request_server:RequestServer._evaluate_if_headers": ("self", "res", "environ"),
    "wsgidav.request_server:RequestServer._copy_or_move": ("self", "environ", "start_response", "is_move"),
    "wsgidav.fs_dav_provider:FilesystemProvider._loc_to_file_path": ("self", "path", "environ"),
    "wsgidav.fs_dav_provider:FileResource.__init__": ("self", "path", "environ", "file_path"),
    "cheroot.server:HTTPConnection.communicate": ("self",),
    "cheroot.wsgi:Gateway_10.get_environ": ("self",),
    "cheroot.server:HTTPConnection.__init__": ("self", "server", "sock", "makefile"),
    "wsgidav.dir_browser._dir_browser:WsgiDavDirBrowser._get_context": ("self", "environ", "dav_res"),
}  # fmt: skip


def resolve(dotted: str) -> Any:
    """'module:Class.attr' -> the object (raises ImportError or AttributeError if it is gone)."""
    module_name, _, qualname = dotted.partition(":")
    obj: Any = __import__(module_name, fromlist=["_"])
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def source_fingerprint(obj: Any) -> str:
    """A hash of the code, blind to blank lines, comments and indentation only."""
    lines = (line.strip() for line in inspect.getsource(obj).splitlines())
    kept = [line for line in lines if line and not line.startswith("#")]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
