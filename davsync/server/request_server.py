"""WsgiDAV's request handler with our fixes: atomic PUT, finite-depth PROPFIND, honest OPTIONS.

Stock WsgiDAV opens the target for writing before reading the body (an aborted
PUT truncates the file), mishandles `<propname/>`, and advertises write methods
to read-only users. These overrides keep its locking and If-header logic.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_METHOD_NOT_ALLOWED,
    HTTP_NOT_FOUND,
    HTTP_NOT_IMPLEMENTED,
    HTTP_PRECONDITION_FAILED,
    DAVError,
    PRECONDITION_CODE_PropfindFiniteDepth,
)
from wsgidav.request_server import RequestServer

from .changefeed import sync_collection
from .destination import check_same_origin, with_destination_fix
from .multistatus import property_response, send_multistatus
from .names import is_internal_path
from .provider import DavsyncProvider
from .upload import UploadError, answer_upload, body_length, expected_md5, parse_oc_mtime, receive
from .wsgitypes import StartResponse

MAX_XML_BODY = 1024 * 1024
XML_METHODS = {"PROPFIND", "PROPPATCH", "REPORT", "LOCK"}
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
WRITE_METHODS = frozenset({"PUT", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK", "POST", "PATCH"})

_copy_or_move_fixed = with_destination_fix(RequestServer._copy_or_move)


def refuse_doctype(environ: dict, length: int) -> None:
    """400 for a DAV body with a DTD. WsgiDAV parses with resolve_entities=False, keeps `&name;`
    unexpanded and stores it (a LOCK owner, a dead property), then fails to re-parse it on every
    later answer: a 500 and a lock that no one can see or remove. No WebDAV client sends a DTD."""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    if _DTD.search(body):
        raise DAVError(HTTP_BAD_REQUEST, context_info="XML bodies with a DOCTYPE or ENTITY are not accepted.")


class DavsyncRequestServer(RequestServer):
    def __init__(self, provider: DavsyncProvider, *, allow_infinite_depth: bool) -> None:
        super().__init__(provider)
        self.allow_propfind_infinite = allow_infinite_depth
        self._possible_methods: list[str] = [*self._possible_methods, "REPORT"]
        self._davProvider: DavsyncProvider

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method in XML_METHODS:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise DAVError(HTTP_BAD_REQUEST, "Content-Length is not a number.") from None
            if length > MAX_XML_BODY:
                raise DAVError(413, f"XML request bodies are limited to {MAX_XML_BODY} bytes.")
            if length > 0:
                refuse_doctype(environ, length)
        if method in ("DELETE", "MOVE") and environ["PATH_INFO"].strip("/") == "":
            raise DAVError(HTTP_FORBIDDEN, "The share's root folder cannot be deleted or moved.")
        return super().__call__(environ, start_response)

    def _readonly(self, environ: dict) -> bool:
        return self._davProvider.is_readonly() or bool(environ.get("davsync.readonly"))

    # --- COPY / MOVE ----------------------------------------------------------

    def _copy_or_move(self, environ: dict, start_response: StartResponse, is_move: bool) -> Iterable[bytes]:
        """Upstream's COPY/MOVE with a correct Destination parser (see destination.py)."""
        # Upstream bug (WsgiDAV 4.4, mar10/wsgidav#139): the Destination is unquoted before it is
        # split, so an encoded '?' or ';' cuts the name and overwrites another file.
        check_same_origin(environ)
        return _copy_or_move_fixed(self, environ, start_response, is_move)

    # --- OPTIONS ---------------------------------------------------------------

    def do_OPTIONS(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # Upstream bug (WsgiDAV 4.4): Allow asks only whether the provider is read-only, so a
        # read-only user is offered every write method (and then refused).
        path = environ["PATH_INFO"]
        provider = self._davProvider
        readonly = self._readonly(environ) and not environ.get("davsync.login_could_write")
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", "0"),
            ("DAV", "1" if readonly or provider.lock_manager is None else "1, 2"),
            ("Date", util.get_rfc1123_time()),
            ("MS-Author-Via", "DAV"),
        ]
        if path == "*":
            start_response("200 OK", headers)
            return [b""]
        res = provider.get_resource_inst(path, environ)
        allow = ["OPTIONS"]
        if res is not None:
            allow += ["HEAD", "GET", "PROPFIND", "REPORT"]
            if not readonly:
                allow += ["DELETE", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK"]
                if not res.is_collection:
                    allow.append("PUT")
            if not res.is_collection:
                headers.append(("Accept-Ranges", "bytes"))
        elif provider.is_collection(util.get_uri_parent(path), environ):
            if not readonly:
                allow += ["PUT", "MKCOL", "LOCK"]
        else:
            self._fail(HTTP_NOT_FOUND, context_info=path)
        only = provider.methods_at(path)
        if only is not None:
            allow = [m for m in allow if m in only]
        headers.append(("Allow", ", ".join(allow)))
        start_response("200 OK", headers)
        return [b""]

    # --- PROPFIND --------------------------------------------------------------

    def do_PROPFIND(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # Upstream bugs (WsgiDAV 4.4): it looks for <D:name/> where RFC 4918 says <D:propname/>,
        # applies Depth to files, and builds the whole multistatus in memory.
        path = environ["PATH_INFO"]
        depth = environ.setdefault("HTTP_DEPTH", "infinity")
        if depth not in ("0", "1", "infinity"):
            self._fail(HTTP_BAD_REQUEST, context_info=f"Invalid Depth header: {depth!r}.")
        res = self._davProvider.get_resource_inst(path, environ)
        if res is None:
            self._fail(HTTP_NOT_FOUND, context_info=path)
        if not res.is_collection:
            # Depth only matters for collections (RFC 4918 9.1): on a file, a missing Depth
            # or infinity is Depth 0. fsspec/webdav4 sends no Depth at all, even on files.
            depth = environ["HTTP_DEPTH"] = "0"
        if depth == "infinity" and not self.allow_propfind_infinite:
            self._fail(
                HTTP_FORBIDDEN,
                context_info="PROPFIND with Depth: infinity is disabled; walk with Depth: 1.",
                err_condition=PRECONDITION_CODE_PropfindFiniteDepth,
            )
        self._evaluate_if_headers(res, environ)

        mode, names = parse_propfind(util.parse_xml_body(environ, allow_empty=True))

        def responses() -> Iterator[etree._Element]:
            for child in _members(res, depth):
                props = child.get_properties(mode, name_list=names if mode == "named" else None)
                if mode == "name":
                    props = [(name, None) for name, _ in props]
                yield property_response(child.get_href(), props)

        return send_multistatus(start_response, responses(), stream=res.is_collection and depth != "0")

    # --- PROPPATCH ---------------------------------------------------------------

    def do_PROPPATCH(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # Upstream (WsgiDAV 4.4) answers 400 to any Depth but 0; RFC 4918 9.2 gives PROPPATCH no
        # Depth semantics, and webdavclient3's set_property sends Depth: 1. Nothing to refuse: it
        # applies to the resource itself, whatever Depth says.
        environ["HTTP_DEPTH"] = "0"
        return super().do_PROPPATCH(environ, start_response)

    # --- REPORT -----------------------------------------------------------------

    def do_REPORT(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """RFC 6578 sync-collection (the only report we support)."""
        return sync_collection(self._davProvider, environ, start_response)

    # --- PUT -------------------------------------------------------------------

    def do_PUT(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # Upstream bug (WsgiDAV 4.4, mar10/wsgidav#6): it opens the target for writing before it
        # reads the body, so an aborted upload leaves a truncated file. Ours writes a temp file
        # and renames it into place (upload.py).
        path = environ["PATH_INFO"]
        provider = self._davProvider
        if path.strip("/") == "":
            self._fail(HTTP_METHOD_NOT_ALLOWED, context_info="Cannot PUT to the share's root folder.")
        if is_internal_path(path):
            self._fail(HTTP_FORBIDDEN, context_info="That name is reserved for davsync's upload files.")
        encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding not in ("", "identity"):
            self._fail(HTTP_NOT_IMPLEMENTED, context_info="Content-Encoding is not supported on PUT.")
        if "HTTP_CONTENT_RANGE" in environ:
            self._fail(HTTP_BAD_REQUEST, context_info="Content-Range is not allowed on PUT.")

        res = provider.get_resource_inst(path, environ)
        parent = provider.get_resource_inst(util.get_uri_parent(path), environ)
        if res is not None and res.is_collection:
            self._fail(HTTP_METHOD_NOT_ALLOWED, context_info="Cannot PUT to a collection.")
        if parent is None or not parent.is_collection:
            self._fail(HTTP_CONFLICT, context_info="The parent folder does not exist; make it first.")
        self._evaluate_if_headers(res, environ)
        if res is None and "HTTP_IF_MATCH" in environ:
            # Upstream bug (WsgiDAV 4.4): _evaluate_if_headers returns early when the target does not exist, so
            # If-Match on a missing resource passes; RFC 9110 13.1.1 says 412. (Pinned by
            # tests/test_versions_preconditions.py::test_upstream_skips_if_match_on_missing_target.)
            self._fail(HTTP_PRECONDITION_FAILED, context_info="If-Match failed: the resource does not exist.")

        try:
            md5_expected = expected_md5(environ.get("HTTP_OC_CHECKSUM"))
            mtime = parse_oc_mtime(environ.get("HTTP_X_OC_MTIME"))
            content_length = body_length(environ)
        except UploadError as e:
            raise DAVError(e.status, e.message) from None

        ref_url = provider.ref_url_of(path)
        lock_man = provider.lock_manager
        if "wsgidav.conditions.if" not in environ:
            util.parse_if_header_dict(environ)
        try:
            if lock_man is not None:
                with lock_man.write_transaction(
                    url=ref_url,
                    token_list=environ["wsgidav.ifLockTokenList"],
                    principal=environ["wsgidav.user_name"],
                ):
                    upload = self._receive(environ, path, content_length, md5_expected, mtime)
            else:
                upload = self._receive(environ, path, content_length, md5_expected, mtime)
        except UploadError as e:
            raise DAVError(e.status, e.message) from None
        environ["wsgidav.all_input_read"] = 1
        return answer_upload(environ, start_response, provider, path, upload, mtime_given=mtime is not None)

    def _receive(self, environ: dict, path: str, length: int | None, md5: str | None, mtime: int | None) -> Any:
        return receive(
            environ["wsgi.input"],
            self._davProvider.file_path(path),
            content_length=length,
            md5_expected=md5,
            mtime=mtime,
            place=self._davProvider.place_upload(path, environ),
        )


def _members(res: Any, depth: str) -> Iterator[Any]:
    """The resource and (for Depth 1) its members, made one at a time."""
    if depth == "infinity":
        yield from res.get_descendants(depth="infinity", add_self=True)
        return
    yield res
    if depth == "1" and res.is_collection:
        for name in res.get_member_names():
            member = res.get_member(name)
            if member is not None:
                yield member


def parse_propfind(body: Any) -> tuple[str, list[str]]:
    """(mode, names) from a PROPFIND body; an empty body means allprop (RFC 4918 9.1)."""
    if body is None:
        return "allprop", []
    if body.tag != "{DAV:}propfind":
        raise DAVError(HTTP_BAD_REQUEST, "The body must be a DAV:propfind element.")
    mode: str | None = None
    names: list[str] = []
    for node in body:
        if not isinstance(node.tag, str):
            continue
        kind = {"{DAV:}allprop": "allprop", "{DAV:}propname": "name", "{DAV:}prop": "named"}.get(node.tag)
        if kind is None:
            continue
        if mode is not None and mode != kind:
            raise DAVError(HTTP_BAD_REQUEST, "allprop, propname and prop are mutually exclusive.")
        mode = kind
        if kind == "named":
            names += [p.tag for p in node if isinstance(p.tag, str)]
    return mode or "allprop", names


__all__ = ["DavsyncRequestServer", "WRITE_METHODS"]
