"""The one exception hierarchy of coordsync.

Backend and library errors are translated into these at the boundary
(``raise ... from err``) so callers never need to know which coordination
driver or storage call failed.
"""


class CoordsyncError(Exception):
    """Root of every error coordsync raises on purpose."""


class ConfigError(CoordsyncError):
    """A configuration value is missing, malformed or inconsistent."""


class CoordinationUnavailable(CoordsyncError):
    """The coordination backend cannot be reached right now."""


class RingError(CoordsyncError):
    """A ring file is missing, corrupt, or a ring request is invalid."""


class DiskFileError(CoordsyncError):
    """An object on disk cannot be read or written."""


class DiskFileCorrupt(DiskFileError):
    """An object's files on disk are unreadable; it has been quarantined."""


class DiskFileNotFound(DiskFileError):
    """No object (and no tombstone) exists at this location."""
