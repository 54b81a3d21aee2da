"""Build the WsgiDAV application and the cheroot server that runs it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from wsgidav.dav_error import HTTP_NOT_FOUND, DAVError
from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.mw.base_mw import BaseMiddleware
from wsgidav.prop_man.property_manager import ShelvePropertyManager
from wsgidav.wsgidav_app import WsgiDAVApp

from ..osfs import make_dirs
from ..users import Users
from .auth import DavsyncDomainController, FrontGate, WriteGuard
from .blocks import BlocksMiddleware, BlockStore
from .browser_headers import BrowserHeaders
from .bundle import BundleMiddleware
from .connguard import DeferredTLS, GuardedServer
from .deltapush import DeltaPushMiddleware
from .fastget import FastGet
from .fastpropfind import FastPropfind
from .http import StickyConnection
from .index import HashIndex
from .lftp_compat import LftpProppatchCompat
from .limiter import FailureLimiter
from .link_answers import PlainErrors
from .link_fs import LinkProvider
from .link_gate import LinkGate, WsgiApp, link_app_factory
from .links import LinkStore
from .lockstore import LOCKS_FILE, LockStore
from .pages import PageBrowser
from .provider import DavsyncProvider
from .request_server import DavsyncRequestServer
from .resumable import ResumableMiddleware, SessionStore
from .runlock import hold_shared, release
from .sendfile import install as install_sendfile
from .settings import ServeSettings
from .shareroot import RootGate, RootGuard, claim_root
from .versions import Pruner, VersionStore
from .watcher import ChangeTracker
from .wsgitypes import StartResponse

log = logging.getLogger("davsync.server")

IO_BLOCK = 1024 * 1024


class _Resolver(BaseMiddleware):
    """Hands each request to our request server (stock WsgiDAV hard-codes its own)."""

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        provider = environ["wsgidav.provider"]
        if provider is None:
            raise DAVError(HTTP_NOT_FOUND, "No share here.")
        opts = self.config["davsync"]
        server = DavsyncRequestServer(provider, allow_infinite_depth=opts["allow_infinite_depth"])
        app_iter = server(environ, start_response)
        try:
            yield from app_iter
        finally:
            # PEP 3333: the server must call close() on what the application returned (an open
            # file, a generator holding a lock); upstream's resolver does, and so do we, also
            # when the client goes away mid-body and this generator is closed early.
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()


@dataclass
class ShareState:
    """What the app shares with background workers: the index and the provider."""

    settings: ServeSettings
    index: HashIndex
    provider: DavsyncProvider
    versions: VersionStore
    guard: RootGuard
    tracker: Any = None  # the ChangeTracker, once the server has one (the admin page reads its health)


def build_app(settings: ServeSettings, users: Users) -> tuple[Callable[..., Iterable[bytes]], ShareState]:
    state_dir = settings.state_dir
    if state_dir is None:
        raise ValueError("build_app needs resolved settings: ServeSettings.resolved() fills in state_dir.")
    make_dirs(state_dir)
    index = HashIndex(state_dir / "index.sqlite")
    try:  # before anything reads the root: an empty mount point is not the share (shareroot.py)
        guard = RootGuard(settings.root, claim_root(settings.root, index, new_share=settings.new_share))
    except BaseException:
        index.close()
        raise
    versions = VersionStore(
        settings.root, state_dir, keep_seconds=settings.keep_versions_seconds,
        max_bytes=settings.versions_max_bytes(), known=index.known_under,
    )  # fmt: skip
    recovered = versions.recover()  # before the first request: a crash's half-done version is settled
    if recovered:
        log.warning("Settled %d versions left half-done by a crash.", recovered)
    provider = DavsyncProvider(str(settings.root), index, versions=versions)
    provider.scanned = guard.scanned
    state = ShareState(settings, index, provider, versions, guard)
    provider.blocks = BlockStore(state_dir / "blocks.sqlite")
    links = LinkStore(state_dir)
    config: dict[str, Any] = {
        "provider_mapping": {"/": provider},
        "verbose": 3 if settings.verbose else 1,
        "logging": {"enable": bool(settings.verbose)},
        "block_size": IO_BLOCK,
        "lock_storage": LockStore(str(state_dir / LOCKS_FILE)),
        "property_manager": ShelvePropertyManager(str(state_dir / "props.shelve")),
        "http_authenticator": {
            "domain_controller": DavsyncDomainController,
            "accept_basic": True,
            "accept_digest": False,  # FrontGate checks Digest itself (auth.py) and sends its challenge
            "default_to_digest": False,
        },
        "dir_browser": {
            "enable": True,
            "response_trailer": "davsync",
            "show_user": True,
            "davmount": True,
            "ms_sharepoint_support": False,
            "libre_office_support": False,
            "ignore": [],
        },
        "hotfixes": {"re_encode_path_info": True, "unquote_path_info": False},
        "add_header_MS_Author_Via": True,
        "suppress_version_info": True,
        # BundleMiddleware: davsync's many-files-per-request REPORT and POST (bundle.py, bulkupload.py);
        # ResumableMiddleware: resumable uploads of big files (resumable.py); BlocksMiddleware:
        # big files' block hashes for delta transfers (blocks.py); DeltaPushMiddleware: edits of big
        # files sent as changed blocks (deltapush.py); PageBrowser: davsync's own folder pages for
        # browsers (pages/, also the share links a logged-in user makes there or from the PC app:
        # pages/sharing.py), WsgiDAV's page for the rest
        "middleware_stack": [
            ErrorPrinter, HTTPAuthenticator, WriteGuard, ResumableMiddleware, BlocksMiddleware, DeltaPushMiddleware,
            PageBrowser, WsgiDavDirBrowser, BundleMiddleware, _Resolver,
        ],  # fmt: skip
        "davsync": {
            "users": users,
            "anonymous": settings.anonymous,
            "allow_infinite_depth": settings.allow_infinite_depth,
            "uploads": SessionStore(state_dir / "uploads"),
            "state_dir": str(state_dir),  # the pages' thumbnail cache (pages/thumbs.py)
            "share_state": state,  # the pages' "Recently deleted" (pages/deleted.py)
            "links": links,  # links made on the folder page (pages/sharing.py)
        },
    }
    dav_app = WsgiDAVApp(config)
    listings = FastPropfind(dav_app, provider, users, settings.anonymous, dav_app.config)
    fast = FastGet(listings, provider, users, settings.anonymous, dav_app.config)
    limiter = FailureLimiter()  # one for every login: the share, its links, the admin page
    share = PlainErrors(RootGate(LftpProppatchCompat(fast), guard), pages=True)  # not WsgiDAV's error pages
    front = FrontGate(share, users, settings.anonymous, limiter)
    make_link_app = link_app_factory(config, dav_app)

    def gated_link_app(provider: LinkProvider, prefix: str) -> WsgiApp:
        """A link's folder is part of the share: no partial listing of it either (shareroot.py)."""
        return RootGate(make_link_app(provider, prefix), guard)

    gate = LinkGate(front, links, str(settings.root), gated_link_app, index, versions,
                    anonymous=settings.anonymous, limiter=limiter, users=users)  # fmt: skip
    if settings.admin:
        from .admin import AdminGate

        # (the admin page sets its own headers)
        return AdminGate(BrowserHeaders(gate), users, settings, state, limiter), state
    return BrowserHeaders(gate), state


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each busy thread its own malloc arena; with 40 request threads the freed
    memory in those arenas keeps RSS high. Two arenas keep the server small (Pi-friendly)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class DavServer:
    """A running share: cheroot on a thread, plus the background index scan."""

    def __init__(self, settings: ServeSettings, users: Users) -> None:
        limit_malloc_arenas()
        self.settings = settings
        assert settings.state_dir is not None
        make_dirs(settings.state_dir)  # durable: the index inside it answers for acknowledged writes
        self._run_lock = hold_shared(settings.state_dir)  # `davsync versions` sees a server is running
        try:
            self.app, self.state = build_app(settings, users)
        except BaseException:
            release(self._run_lock)
            raise
        self.pruner = Pruner(self.state.versions)
        self._server = GuardedServer(
            (settings.host, settings.port),
            self.app,
            numthreads=settings.threads,
            server_name="davsync",
            timeout=60,
            shutdown_timeout=5,
        )
        self._server.ConnectionClass = StickyConnection
        install_sendfile(self._server)
        if settings.tls_cert:
            self._server.ssl_adapter = DeferredTLS(str(settings.tls_cert), str(settings.tls_key))
        self._thread: threading.Thread | None = None
        self.tracker = ChangeTracker(
            str(settings.root), self.state.index, rescan_interval=settings.rescan_interval, guard=self.state.guard
        )
        self.state.tracker = self.tracker
        self.state.provider.sweep = self.tracker.sweep

    @property
    def scan_done(self) -> threading.Event:
        return self.tracker.initial_scan_done

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls_cert else "http"

    def start(self) -> None:
        self._server.prepare()
        from .server_info import write_server_info

        write_server_info(self.settings, self.port, self.scheme)
        self._thread = threading.Thread(target=self._server.serve, name="davsync-http", daemon=True)
        self._thread.start()
        self.tracker.start()  # watches first, then scans: nothing changed meanwhile is missed
        if self.state.versions.enabled:
            self.pruner.start()

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.tracker.stop()
        if self.state.versions.enabled:
            self.pruner.stop()
        self.state.versions.close()
        self.state.index.close()
        self.state.provider.blocks.close()
        release(self._run_lock)

    def __enter__(self) -> DavServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["build_app", "DavServer", "ShareState"]
