"""davsync: serve a folder over WebDAV with trustworthy MD5s, and mirror it safely."""

__version__ = "0.1.0"
