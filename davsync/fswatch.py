"""What both sides' watchers (watchdog) need alike: stopping an observer despite a watchdog 7.1 bug."""

from __future__ import annotations

from watchdog.observers.api import BaseObserver


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
