"""The installed version of coordsync."""

from importlib import metadata


def version_string():
    try:
        return metadata.version('coordsync')
    except metadata.PackageNotFoundError:
        return '0+unknown'
