"""Names the server keeps to itself: upload temp files are never listed or served."""

TEMP_PREFIX = ".~davsync-"
TEMP_SUFFIX = ".part"


def is_internal_name(name: str) -> bool:
    """True for our in-flight upload files, which clients must never see or touch."""
    return name.startswith(TEMP_PREFIX)


def is_internal_path(path: str) -> bool:
    return any(is_internal_name(part) for part in path.split("/"))
