"""What both sides' watchers (watchdog) need alike: one way to make, and to stop, an observer."""

from __future__ import annotations

import warnings

from watchdog.observers.api import BaseObserver

# watchdog 7.1 watches a new folder's subfolders when it sees the folder made, and again when
# their own creation events arrive: it warns (with a dump of its state) and keeps one watch.
# Harmless, but `serve` and `watch` would print it raw to the user. Still so in 7.1.1
# (inotify_c.py, add_callback; the open note in inotify.py, _add_all_callbacks).
warnings.filterwarnings("ignore", message=r"Callback with id '\d+' already exists", category=RuntimeWarning)


def new_observer() -> BaseObserver:
    """watchdog's observer for this platform (inotify on the Pi, ReadDirectoryChangesW on Windows).

    Until watchdog 7.1.0 the server needed its own inotify subclass: a folder moved out of the
    share kept its watches, and once two stale watches shared a path, Observer.stop and watchdog's
    reader thread died of a KeyError. watchdog 7.1.1 tracks watches as a tree of folders and
    fixed both; tests/test_upstream_contract.py (watchdog) proves it on every locked version.
    """
    from watchdog.observers import Observer

    return Observer()


def stop_observer(observer: BaseObserver, timeout: float = 10.0) -> None:
    """Stop and join a watchdog observer (its threads are daemons: a bounded wait is enough)."""
    observer.stop()
    observer.join(timeout=timeout)
