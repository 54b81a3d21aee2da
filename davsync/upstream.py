"""Every upstream internal and exact behaviour davsync relies on, in one place, with why.

davsync uses its dependencies through their public APIs, but fixing their bugs and keeping the
server and client fast needs a few private names, and some behaviours no API documents. An upgrade
may change any of them silently, so each is listed here and checked by a contract test
(`@pytest.mark.contract("package")`, run in the default suite against the locked versions and by
`python -m tests.drift` against the newest releases):

- RELIANCES: private names (attributes, methods, environ keys, private modules) and the davsync
  modules that use them. tests/test_upstream_contract.py checks that each still exists and that
  the list is exact: a private WsgiDAV or cheroot name, a `wsgidav.*` environ key, an explicit
  upstream `__init__` call, a `getattr(x, "_private")` or an import from a private module, in a
  module not listed here, fails it.
- FINGERPRINTS and SIGNATURES: where we copy, skip or replace upstream code, a hash of that code
  and the parameters we call with. A changed fingerprint means "read the upstream change and adapt
  our side", then update the fingerprint here.
- BEHAVIOURS: public behaviour we depend on that a release could change without renaming anything
  (watchdog's handling of moved folders, pathspec's pattern meaning, pystray's menu, ...), each
  with the tests that prove it. The contract test checks that every test named here exists and is
  marked for its package, and that every contract test in the suite is named here.

Where we work around an upstream bug, the code says which. `used_in` paths are relative to
davsync/. Pinned against the versions in requirements.lock.
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
    used_in: tuple[str, ...]  # modules that use it, relative to davsync/
    why: str


RELIANCES: tuple[Reliance, ...] = (
    # --- wsgidav.request_server.RequestServer (we subclass it: request_server.py) ---------------
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_davProvider",
        ("server/request_server.py",),
        "The provider of the request: the public API has no accessor for it.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_fail",
        ("server/request_server.py",),
        "Raises a DAVError with upstream's logging and precondition codes; our do_* overrides "
        "answer errors exactly like the methods they replace.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_evaluate_if_headers",
        ("server/request_server.py",),
        "If/If-Match/If-None-Match and lock-token checks: our PUT and PROPFIND keep upstream's.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_copy_or_move",
        ("server/request_server.py",),
        "Upstream bug (4.4): it unquotes the Destination URL twice. destination.py re-binds this "
        "function's globals `unquote` and `urlparse`; its body is otherwise upstream's.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "_possible_methods",
        ("server/request_server.py",),
        "The methods __call__ dispatches: REPORT is added to it.",
    ),
    Reliance(
        "wsgidav.request_server:RequestServer",
        "allow_propfind_infinite",
        ("server/request_server.py",),
        "Our setting for Depth: infinity replaces upstream's always-True default.",
    ),
    # --- wsgidav.fs_dav_provider -------------------------------------------------------------------
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "_loc_to_file_path",
        ("server/provider.py", "server/link_fs.py"),
        "Overridden wholesale: ours refuses symlinks in every folder above the target and caches "
        "the check. Upstream fixed a containment bug here in 4.3.4 (a sibling folder named like "
        "the root plus a suffix); our override never receives such fixes, so the path-jail tests "
        "probe that case (tests/test_serve_paths.py) and the fingerprint flags later changes. "
        "A link to one file narrows it once more (link_fs.py): every other path is not found.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "_is_equal_or_child_path",
        ("server/provider.py",),
        "The containment test our _loc_to_file_path uses on real paths.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FilesystemProvider",
        "root_folder_path_real",
        ("server/provider.py",),
        "The realpath of the root, set by upstream's __init__.",
    ),
    Reliance(
        "wsgidav.dav_provider:DAVProvider",
        "_count_get_resource_inst",
        ("server/provider.py",),
        "Upstream's statistics counter, kept up to date by our get_resource_inst.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FileResource",
        "_file_path",
        ("server/provider.py",),
        "Where a resource's file or folder lies on disk (FileResource and FolderResource keep it "
        "here): DavsyncFile sets it, and deletes, copies and moves read it.",
    ),
    Reliance(
        "wsgidav.fs_dav_provider:FileResource",
        "__init__",
        ("server/provider.py",),
        "Skipped: it stats the file again though get_resource_inst just did (one stat per file "
        "in a listing). DavsyncFile sets the same attributes itself: _file_path, file_stat, name.",
    ),
    # --- the resolver (app.py _Resolver replaces wsgidav.request_resolver.RequestResolver) --------
    Reliance(
        "wsgidav.request_resolver:RequestResolver",
        "__call__",
        ("server/app.py",),
        "Stock WsgiDAV hard-codes its RequestServer; _Resolver makes ours, and closes app_iter as upstream does.",
    ),
    Reliance(
        "wsgidav.dir_browser._dir_browser:WsgiDavDirBrowser",
        "_get_context",
        ("server/link_gate.py",),
        "The folder page's template values: a link's page names the shared folder in its heading, "
        "where upstream shows the href (which holds the token).",
    ),
    # --- WSGI environ keys -----------------------------------------------------------------------
    Reliance(
        "wsgidav",
        "wsgidav.provider",
        (
            "server/app.py",
            "server/bundle.py",
            "server/resumable.py",
            "server/blocks.py",
            "server/deltapush.py",
            "server/pages/browser.py",
            "server/pages/sharing.py",
            "server/link_drop.py",
        ),
        "Set by WsgiDAVApp: the provider for the path (a resource reads its provider from it: a drop "
        "makes its folders before the app runs, so it sets the key itself).",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.user_name",
        ("server/request_server.py", "server/provider.py", "server/link_gate.py"),
        "The user upstream's lock and property managers record (RequestServer.__call__ sets it); "
        "share links set it to the link's own name.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.auth.user_name",
        (
            "server/auth.py",
            "server/provider.py",
            "server/link_gate.py",
            "server/bulkupload.py",
            "server/resumable.py",
            "server/pages/deleted.py",
            "server/pages/sharing.py",
        ),
        "Set by HTTPAuthenticator after a login; auth.py sets it after its own Digest check, and "
        "share links set it to a link's own name. The bulk upload checks locks for this principal; "
        "a resumable upload belongs to it.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.conditions.if",
        ("server/request_server.py", "server/bulkupload.py"),
        "Set by util.parse_if_header_dict: our PUT and the bulk upload parse the If header only once.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.ifLockTokenList",
        ("server/request_server.py", "server/provider.py", "server/bulkupload.py", "server/resumable.py"),
        "The lock tokens from the If header, for lock_manager.write_transaction in our PUT, the lock check "
        "of each bulk-upload member and a resumable upload's commit.",
    ),
    Reliance(
        "wsgidav",
        "wsgidav.all_input_read",
        (
            "server/request_server.py",
            "server/link_gate.py",
            "server/bundle.py", "server/bulkupload.py",
            "server/resumable.py",
            "server/deltapush.py",
        ),
        "Tells WsgiDAVApp the body was consumed, so it does not drain the input again.",
    ),
    # --- cheroot --------------------------------------------------------------------------------
    Reliance(
        "cheroot.server:HTTPConnection",
        "communicate",
        ("server/http.py",),
        "StickyConnection calls it in a loop: it serves one request and returns whether the "
        "connection stays open (an undocumented contract).",
    ),
    Reliance(
        "cheroot.server:HTTPConnection",
        "rfile",
        ("server/http.py",),
        "The buffered reader: has_data() says whether the next request is already read in.",
    ),
    Reliance(
        "cheroot.makefile:StreamReader",
        "has_data",
        ("server/http.py",),
        "Whether buffered bytes are waiting, without touching the socket.",
    ),
    Reliance(
        "cheroot.server:HTTPServer",
        "ConnectionClass",
        ("server/app.py",),
        "The class cheroot makes per connection: StickyConnection is installed through it.",
    ),
    # --- cheroot: file bodies sent by the kernel (sendfile.py) -----------------------------------
    Reliance(
        "cheroot.server:HTTPServer",
        "gateway",
        ("server/sendfile.py",),
        "The gateway class cheroot makes per request: SendfileGateway is installed through it.",
    ),
    Reliance(
        "cheroot.wsgi:Gateway",
        "remaining_bytes_out",
        ("server/sendfile.py",),
        "The Content-Length the application declared: how many bytes sendfile sends.",
    ),
    Reliance(
        "cheroot.wsgi:Gateway",
        "started_response",
        ("server/sendfile.py",),
        "Whether start_response ran: the file is sent raw only after it did.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "sent_headers",
        ("server/sendfile.py",),
        "False until the first body byte: a file body is sent raw only when it is the whole body.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "ensure_headers_sent",
        ("server/sendfile.py",),
        "Writes the status line and headers (through wfile, which flushes all of it) before the raw file.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "chunked_write",
        ("server/sendfile.py",),
        "A chunked response needs cheroot's framing: never sent raw (guard).",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "close_connection",
        ("server/sendfile.py",),
        "Set when a file shrank while sent, so the client sees the end instead of waiting.",
    ),
    Reliance(
        "cheroot.server:HTTPRequest",
        "conn",
        ("server/sendfile.py",),
        "The connection, for its socket.",
    ),
    Reliance(
        "cheroot.server:HTTPConnection",
        "socket",
        ("server/sendfile.py",),
        "The client socket (an SSLSocket under TLS): sendfile and sendall go to it directly.",
    ),
    # --- cheroot's connection manager (connguard.py) ---------------------------------------------
    Reliance(
        "cheroot.server:HTTPServer",
        "_connections",
        ("server/connguard.py",),
        "The ConnectionManager prepare() makes: a connection whose request head is unfinished is "
        "parked in its selector, and the idle one that waited longest is closed when too many are open.",
    ),
    Reliance(
        "cheroot.connections:ConnectionManager",
        "_selector",
        ("server/connguard.py",),
        "Its thread-safe selector: registered into directly (put() would reset last_used, the head's "
        "deadline, and hand a partly buffered head straight back to process_conn).",
    ),
    # --- wsgidav.lock_man.lock_storage (lockstore.py) --------------------------------------------
    Reliance(
        "wsgidav.lock_man.lock_storage:LockStorageDict",
        "_dict",
        ("server/lockstore.py",),
        "The stored locks (token -> lock dict with 'owner' bytes): read once at open to drop locks "
        "whose owner no answer could render.",
    ),
    # --- urllib3 (client/transport.py BodyReader) ------------------------------------------------
    Reliance(
        "urllib3.response:HTTPResponse",
        "_fp",
        ("client/transport.py",),
        "The http.client response under urllib3's: a download is read straight into our buffer "
        "with its readinto (no copy per chunk); without it BodyReader falls back to urllib3's reads.",
    ),
    # --- typer (typer_coerce.py: command-line values converted without pydantic) ------------------
    Reliance(
        "typer._click",
        "Context",
        ("typer_coerce.py",),
        "typer's vendored click: the context our converters receive and pass to BadParameter.",
    ),
    Reliance(
        "typer._click.exceptions",
        "BadParameter",
        ("typer_coerce.py",),
        "The error typer turns into its usage message: ours carries the same text as typer's own.",
    ),
    Reliance(
        "typer._coercion",
        "RuntimeParam",
        ("typer_coerce.py",),
        "The converter typer builds per parameter: ours subclasses it.",
    ),
    Reliance(
        "typer._coercion",
        "TypeDescriptor",
        ("typer_coerce.py",),
        "typer's description of a parameter's annotation, which decides which converter we build.",
    ),
    Reliance(
        "typer._param_types",
        "coerce_cli_path",
        ("typer_coerce.py",),
        "typer's own Path conversion, so a Path parameter behaves exactly as without our builder.",
    ),
    Reliance(
        "typer.core",
        "build_runtime_param",
        ("typer_coerce.py",),
        "The builder install() replaces (a module global typer looks up by name at each call).",
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

@dataclass(frozen=True)
class Behaviour:
    """Public behaviour we depend on that a release could change silently, and the tests proving it."""

    package: str
    what: str
    used_in: tuple[str, ...]
    tests: tuple[str, ...]  # "tests/test_x.py::test_name", each marked contract(package)


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "wsgidav",
        "_copy_or_move unquotes the Destination before parsing it, through the globals we re-bind; "
        "FileResource.__init__ sets only the attributes DavsyncFile sets itself.",
        ("server/destination.py", "server/provider.py"),
        (
            "tests/test_serve_destination.py::test_upstream_still_unquotes_before_parsing",
            "tests/test_upstream_contract.py::test_copy_or_move_still_uses_the_names_destination_py_rebinds",
            "tests/test_upstream_contract.py::test_file_resource_init_sets_only_what_ours_sets",
        ),
    ),
    Behaviour(
        "wsgidav",
        "A PUT to a missing target skips If-Match (RFC 9110 says 412): our PUT checks it first.",
        ("server/request_server.py",),
        ("tests/test_versions_preconditions.py::test_upstream_skips_if_match_on_missing_target",),
    ),
    Behaviour(
        "wsgidav",
        "DAVError's HTML page begins with the DOCTYPE link_answers.py recognises and says its reason in "
        "its first <p>, and the reasons UPSTREAM_SAID rephrases are still WsgiDAV's words.",
        ("server/link_answers.py",),
        ("tests/test_serve_error_answers.py::test_upstream_error_pages_are_what_plain_errors_recognises",),
    ),
    Behaviour(
        "cheroot",
        "cheroot's request-line reader asks its stream only for what our fast line reader answers.",
        ("server/http.py",),
        ("tests/test_serve_fastpaths.py::test_cheroot_asks_its_reader_only_what_the_line_reader_does",),
    ),
    Behaviour(
        "typer",
        "typer builds each parameter's converter through the builder typer_coerce replaces, and ours "
        "gives the same values and messages.",
        ("typer_coerce.py",),
        ("tests/test_cli_startup.py::test_typer_still_builds_converters_the_way_typer_coerce_replaces",),
    ),
    Behaviour(
        "typer",
        "typer.main.get_command_from_info/get_group_from_info build a command as app.command(name) and "
        "add_typer(name=...) do, and a TyperGroup finds, lists and suggests its commands through its "
        "`commands` mapping (cli/lazy.py builds each command when it is used).",
        ("cli/lazy.py",),
        ("tests/test_cli_startup.py::test_lazy_commands_are_built_as_typer_builds_registered_ones",),
    ),
    Behaviour(
        "watchdog",
        "The Observer forgets folders moved out of the tree, stops cleanly after a watched folder was "
        "replaced (both fixed in 7.1.1; we patched them before), and leaves no inotify instance behind.",
        ("fswatch.py", "server/watcher.py", "client/localwatch.py"),
        (
            "tests/test_upstream_contract.py::test_watchdog_stops_cleanly_after_a_watched_folder_was_replaced",
            "tests/test_upstream_contract.py::test_watchdog_forgets_a_folder_moved_out_of_the_tree",
            "tests/test_upstream_contract.py::test_the_server_watcher_leaves_no_inotify_instance_behind",
            "tests/test_versions.py::test_folders_moved_out_and_back_keep_the_watcher_quiet_and_alive",
        ),
    ),
    Behaviour(
        "urllib3",
        "A streamed requests answer keeps http.client's response as urllib3's `_fp`.",
        ("client/transport.py",),
        ("tests/test_upstream_contract.py::test_a_streamed_answer_still_exposes_http_clients_response_as_fp",),
    ),
    Behaviour(
        "pathspec",
        "The \"gitignore\" pattern style gives git's meaning (negation, anchoring, folders, **); a "
        "line without a slash compiles to `^(?:.+/)?NAME(?:/|$)` (or `NAME/` for a folder line), "
        "which filters._defaults folds into one regex (a line spelled otherwise is kept whole).",
        ("client/filters.py",),
        (
            "tests/test_upstream_contract.py::test_exclude_patterns_keep_gitignore_meaning",
            "tests/test_exclude_defaults.py::test_the_combined_default_regex_says_what_each_gitignore_line_says",
        ),
    ),
    Behaviour(
        "keyring",
        "With no usable store keyring falls back to fail.Keyring, which raises NoKeyringError (we "
        "say how to run without one); deleting a password that is not stored raises "
        "PasswordDeleteError (we answer False).",
        ("client/credentials.py", "app/core.py"),
        ("tests/test_upstream_registry.py::test_keyring_reports_no_store_and_missing_passwords",),
    ),
    Behaviour(
        "zeroconf",
        "ServiceInfo takes the keyword arguments discovery.py passes and keeps the TXT `path`; "
        "Zeroconf takes an interface list.",
        ("server/discovery.py",),
        ("tests/test_upstream_registry.py::test_zeroconf_takes_the_record_discovery_publishes",),
    ),
    Behaviour(
        "webdavclient3",
        "Client keeps the URL, login, timeout and TLS setting the transport reads back, and a "
        "requests session the transport's first thread reuses.",
        ("client/transport.py", "client/remote.py"),
        ("tests/test_upstream_registry.py::test_webdavclient3_client_holds_what_the_transport_reads",),
    ),
    Behaviour(
        "pystray",
        "Icon and MenuItem take the arguments the tray passes (default item, checked callable), and "
        "the icon's image and title can be set while it runs.",
        ("app/tray.py",),
        ("tests/test_upstream_registry.py::test_pystray_takes_what_the_tray_passes",),
    ),
)


def packages() -> list[str]:
    """Every distribution with an entry here (what `python -m tests.drift` reports on)."""
    owners = {r.owner for r in RELIANCES} | {d.partition(":")[0] for d in (*FINGERPRINTS, *SIGNATURES)}
    names = {o.split(".")[0].split(":")[0] for o in owners} | {b.package for b in BEHAVIOURS}
    return sorted(DISTRIBUTION.get(n, n) for n in names)


# Import name -> distribution name, where they differ.
DISTRIBUTION = {"webdav3": "webdavclient3"}


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
