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


class DiskFileDeleted(DiskFileNotFound):
    """The newest file of an object is a tombstone.

    ``timestamp`` (a :class:`~coordsync.common.timestamp.Timestamp`) is when it
    was deleted, for a 404 with ``X-Backend-Timestamp``; ``metadata`` is
    the tombstone's (``name``, ``X-Timestamp``), for replicating it.
    """

    def __init__(self, message, timestamp=None, metadata=None):
        super().__init__(message)
        self.timestamp = timestamp
        self.metadata = metadata


class DiskFileConflict(DiskFileError):
    """A write is not newer than what is stored; nothing was changed.

    ``timestamp`` is the stored timestamp that won.
    """

    def __init__(self, message, timestamp=None):
        super().__init__(message)
        self.timestamp = timestamp


class DiskFileMismatch(DiskFileError):
    """The body written does not match its Content-Length or ETag.

    ``header`` names which one, so a server can answer 499 or 422.
    """

    def __init__(self, message, header=None):
        super().__init__(message)
        self.header = header


class DiskFileCollision(DiskFileError):
    """The object stored under this name's hash has another name."""


class DiskFileDeviceUnavailable(DiskFileError):
    """The device is missing or not mounted (the server answers 507)."""


class DiskFileNoSpace(DiskFileError):
    """The device is full (the server answers 507)."""
