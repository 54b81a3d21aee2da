"""Exit statuses shared by every command (the README has the same table)."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    OUT_OF_SYNC = 1  # `status`: a pull would change something
    USAGE = 2  # bad arguments or configuration
    PARTIAL = 3  # finished, but with conflicts or some files not synced
    CONNECTION = 4  # server unreachable, TLS or authentication failure
    LOCAL = 5  # the local side failed: disk full, permission denied
    INTERRUPTED = 130
