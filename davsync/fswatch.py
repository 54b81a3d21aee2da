"""What both sides' watchers (watchdog) need alike: stopping an observer despite a watchdog 7.1 bug."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings

from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

# watchdog 7.1 watches a new folder's subfolders when it sees the folder made, and again when
# their own creation events arrive: it warns (with a dump of its state) and keeps one watch.
# Harmless, but `serve` and `watch` would print it raw to the user.
warnings.filterwarnings("ignore", message=r"Callback with id '\d+' already exists", category=RuntimeWarning)


def stop_observer(observer: BaseObserver, timeout: float = 10.0) -> None:
    """Stop and join a watchdog observer.

    watchdog 7.1 (inotify.py, _remove_watch_internally): once a watched folder is moved out of
    the tree and another takes its path, two watch descriptors share that path and deactivate()
    pops it twice, so Observer.stop raises KeyError. Its emitter then never got the stop; the
    threads are daemons, so wait only briefly. Pinned by
    tests/test_versions_crash.py::test_upstream_watchdog_stop_keyerror.
    """
    try:
        observer.stop()
    except KeyError:
        timeout = min(timeout, 0.5)
    observer.join(timeout=timeout)


def _written_against(group: type, emitter: type, observer: type) -> bool:
    """Whether watchdog's inotify internals are the ones tree_observer reaches into."""
    fields = {f.name for f in dataclasses.fields(group)} if dataclasses.is_dataclass(group) else set()
    return (
        {"_inotify_fd", "_lock", "_id", "_active_callbacks_by_watch", "_active_callbacks_by_path"} <= fields
        and all(hasattr(group, n) for n in ("_build_event_source_path", "_remove_watch_internally", "on_event"))
        and all(hasattr(emitter, n) for n in ("on_thread_start", "get_event_mask_from_filter"))
        # (the class, never an instance: InotifyObserver() opens an inotify fd and starts a thread)
        and "_emitter_class" in BaseObserver.__init__.__code__.co_names
        and issubclass(observer, BaseObserver)
    )


def tree_observer() -> BaseObserver:
    """A watchdog observer that forgets a folder's inotify watches the moment it leaves the tree.

    watchdog 7.1 keeps watching a folder moved out of the watched tree (its inotify watch follows
    the inode). The server does exactly that: a deleted folder is renamed into the versions area,
    and a restore renames it back. Back in the tree, watchdog adds a watch for the same inode
    again and warns "Callback with id ... already exists" (printed raw by `serve`); and once two
    such stale watches share a path, deleting their folders (pruning) raises KeyError in
    watchdog's reader thread, which then dies and the server stops seeing disk changes. Here
    every folder moved away (IN_MOVED_FROM) drops its watches at once; a move within the tree
    watches the destination afresh, as for a folder moved in from outside.

    Only inotify (Linux, where the server runs) has this; elsewhere this is watchdog's Observer.
    Uses watchdog internals (InotifyWatchGroup's path maps and callback id), pinned by
    tests/test_versions.py::test_folders_moved_out_and_back_keep_the_watcher_quiet_and_alive.
    """
    from watchdog.observers import Observer

    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyEvent, WatchDescriptor
    except Exception:  # no inotify (not Linux)
        return Observer()
    if not _written_against(InotifyWatchGroup, InotifyEmitter, InotifyObserver):
        return Observer()  # another watchdog than the 7.1 this was written against: its own behaviour

    class _Group(InotifyWatchGroup):
        def on_event(self, event: InotifyEvent) -> None:
            if event.is_moved_from and event.is_directory and self.is_recursive:
                try:
                    with self._lock:
                        src = self._build_event_source_path(event) if self.is_active else None
                        if src is not None:
                            self._forget_tree(src)
                except Exception:  # never let this tidy-up end the reader thread
                    log.exception("Could not drop the watches of a folder moved away")
            super().on_event(event)

        def _forget_tree(self, src: bytes) -> None:
            prefix = src + os.sep.encode()
            below = [p for p in self._active_callbacks_by_path if p == src or p.startswith(prefix)]
            wds = {self._active_callbacks_by_path[p] for p in below}
            wds |= {wd for wd, p in self._active_callbacks_by_watch.items() if p == src or p.startswith(prefix)}
            if not wds:
                return
            try:
                self._inotify_fd.remove_callbacks([(wd, self._id) for wd in wds])
            except OSError:
                pass  # the folder is already gone: its watches went with it
            for wd in wds:
                self._active_callbacks_by_watch.pop(wd, None)
            for p in [p for p, wd in self._active_callbacks_by_path.items() if wd in wds]:
                del self._active_callbacks_by_path[p]

        def _remove_watch_internally(self, wd: WatchDescriptor) -> None:
            # upstream pops the path unconditionally: a KeyError when another watch took it meanwhile
            path = self._active_callbacks_by_watch.pop(wd, None)
            if path is not None and self._active_callbacks_by_path.get(path) == wd:
                del self._active_callbacks_by_path[path]

    class _Emitter(InotifyEmitter):
        def on_thread_start(self) -> None:
            self._inotify = _Group(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
            )

    observer = InotifyObserver()
    observer._emitter_class = _Emitter  # InotifyObserver takes no emitter class of its own
    return observer
