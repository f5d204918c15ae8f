"""The embedded default backend: tooz's file driver, made complete.

tooz's file driver needs no server and its locks are fcntl locks that die
with their process, which is what a single machine needs. It lacks one
call coordsync relies on: ``update_capabilities`` (members publish live
progress). This subclass adds it, rewriting the member file atomically
under the driver's own lock, so a reader never sees a half-written file
and the member never disappears from the group while it publishes.

Members of a dead process stop heartbeating; the driver leaves them out of
the group once their file is older than the URL's ``timeout``.
"""

import os
import tempfile
import urllib.parse

from tooz import coordination as tooz_coordination
from tooz import utils as tooz_utils
from tooz.drivers import file as tooz_file

SCHEME = 'file'


class EmbeddedFileDriver(tooz_file.FileDriver):

    def _member_path(self, group_id):
        group_dir = os.path.join(self._group_dir,
                                 self._make_filesystem_safe(group_id))
        return os.path.join(group_dir, '%s.raw' % self._safe_member_id)

    def update_capabilities(self, group_id, capabilities):
        path = self._member_path(group_id)

        @tooz_file._lock_me(self._driver_lock)
        def _update():
            try:
                with open(path, 'rb') as fh:
                    details = self._load_and_validate(fh.read(), 'member')
            except FileNotFoundError:
                raise tooz_coordination.MemberNotJoined(
                    group_id, self._member_id) from None
            details['capabilities'] = capabilities
            fd, tmp = tempfile.mkstemp('.raw', dir=self._tmpdir)
            with os.fdopen(fd, 'wb') as fh:
                fh.write(tooz_utils.dumps(details))
            os.replace(tmp, path)

        return tooz_file.FileFutureResult(self._executor.submit(_update))


def make_driver(url, member_id, options):
    """Build the driver the way ``tooz.coordination.get_coordinator`` does.

    ``options`` take precedence over the URL's query, as in tooz.
    """
    parsed = urllib.parse.urlsplit(url)
    merged = {k: v for k, v in urllib.parse.parse_qs(parsed.query).items()}
    merged.update({k: [v] for k, v in options.items()})
    return EmbeddedFileDriver(member_id, parsed, merged)
