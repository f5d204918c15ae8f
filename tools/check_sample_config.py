"""Fail when etc/coordsync/coordsync.conf.sample is stale.

Compares coordsync's own options with a fresh generation. The oslo.log
blocks of the sample are left out of the comparison: they follow the
installed oslo.log release, not this repository.
Regenerate with ``tox -e genconfig``.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'etc', 'coordsync', 'coordsync.conf.sample')


def own_blocks(text):
    """The sample's lines minus the ``From <other namespace>`` blocks."""
    lines = text.splitlines()
    kept, foreign = [], False
    for i, line in enumerate(lines):
        if line.startswith('[') or (
                line == '#' and i + 1 < len(lines)
                and lines[i + 1].startswith('# From ')):
            nxt = lines[i + 1] if i + 1 < len(lines) else ''
            foreign = nxt.startswith('# From ') and \
                nxt != '# From coordsync'
            if line.startswith('['):
                foreign = False
        if not foreign:
            kept.append(line)
    return [line for line in kept if line.strip()]


def main():
    with tempfile.NamedTemporaryFile('r', suffix='.conf') as fresh:
        subprocess.run(['oslo-config-generator', '--namespace', 'coordsync',
                        '--wrap-width', '79', '--output-file', fresh.name],
                       check=True)
        expected = own_blocks(fresh.read())
    with open(SAMPLE) as fh:
        actual = own_blocks(fh.read())
    if actual != expected:
        for line in sorted(set(expected) ^ set(actual))[:20]:
            print('  differs: %s' % line, file=sys.stderr)
        print('%s is stale: run "tox -e genconfig" and commit it'
              % os.path.relpath(SAMPLE, ROOT), file=sys.stderr)
        return 1
    print('sample config is up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
