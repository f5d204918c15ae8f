"""Where a name lives: the path hash shared by the ring and the disk layout.

Every account/container/object name is hashed with a per-cluster secret
(a prefix and a suffix) so that nobody outside the cluster can craft names
that all land in one partition. The ring takes the top bits of the digest
as the partition; the object store uses the hex digest as the directory
name and its last three characters as the suffix directory.
"""

import hashlib
import struct

from coordsync import exceptions

SUFFIX_LENGTH = 3


def _path(account, container=None, obj=None):
    if obj is not None and container is None:
        raise exceptions.CoordsyncError(
            "an object name needs a container name")
    if not account:
        raise exceptions.CoordsyncError("an account name is required")
    parts = [account]
    if container is not None:
        parts.append(container)
    if obj is not None:
        parts.append(obj)
    return '/' + '/'.join(parts)


def hash_path(account, container=None, obj=None, *, prefix='', suffix=''):
    """Return the hex md5 of ``/account[/container[/obj]]`` salted."""
    raw = (prefix + _path(account, container, obj) + suffix).encode('utf-8')
    # NOTE: md5 is a placement hash here, not a security primitive.
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def partition_of(name_hash, part_power):
    """The partition of a hex name hash: its top ``part_power`` bits."""
    digest = bytes.fromhex(name_hash)
    return struct.unpack_from('>I', digest)[0] >> (32 - part_power)


def suffix_of(name_hash):
    """The suffix directory an object hash is filed under."""
    return name_hash[-SUFFIX_LENGTH:]
