"""coordsync-recon: the cluster view of every node's recon facts.

Finds every node server in the rings this host's config names (the
object ring of each storage policy, the container and account rings),
asks each for its recon facts (``GET /recon/<kind>``, signed with the
cluster secret) and prints a summary like ``swift-recon``::

    coordsync-recon --config-file /etc/coordsync/coordsync.conf --md5
    3/3 hosts answered

    [ring md5] 3/3 hosts matched, 0 error(s)

Sections: ``--replication`` (the last pass of each replicator: oldest
and newest completion, duration low/high/avg, failed items, per node),
``--updater`` (async pendings and the last sweeps), ``--sync``
(container sync: rows behind, failing), ``--md5`` (each node's rings
against this host's files), ``--quarantined``, ``--disk`` (usage per
device), ``--all``; none given: ``--all``. ``-f json`` prints the
report as JSON: ``{"hosts": {"total", "answered", "unanswered":
{host: error}}, "problems": [...], "time", <section>: {...}}``.

Exit status: 0 when every node answered and nothing is wrong, 1 when a
node did not answer (each is named), a ring differs or a device is
unusable, 2 on a bad command line or config.
"""

import json
import sys

from oslo_config import cfg

from coordsync import concurrency
from coordsync import exceptions
from coordsync import service
from coordsync.common import direct_client
from coordsync.common import recon

PROG = 'coordsync-recon'
EXIT_OK, EXIT_PROBLEMS = 0, 1

CLI_OPTS = [
    cfg.BoolOpt('replication', short='r', default=False,
                help='Last replication pass of each replicator kind: '
                     'oldest and newest completion, duration, failures, '
                     'per node.'),
    cfg.BoolOpt('updater', short='u', default=False,
                help='Async pendings on each node and the object '
                     'updater\'s last sweep.'),
    # NOTE: dest differs from the option name: [container-sync] exists.
    cfg.BoolOpt('sync', dest='show_sync', default=False,
                help='Container sync: rows behind and failing per node.'),
    cfg.BoolOpt('md5', default=False,
                help='Compare every node\'s ring files with this host\'s '
                     '(md5).'),
    cfg.BoolOpt('quarantined', short='q', default=False,
                help='Quarantined objects, databases and async pendings.'),
    cfg.BoolOpt('disk', default=False,
                help='Disk usage per device: low, high, average.'),
    cfg.BoolOpt('all', default=False, help='Every section (the default).'),
    cfg.StrOpt('format', short='f', default='table',
               choices=['table', 'json'], help='Output format.'),
    cfg.FloatOpt('timeout', default=5.0, min=0.5, max=300.0,
                 help='Seconds to wait for each node (to connect, and for '
                      'each answer).'),
]

SECTION_FLAGS = (('replication', 'replication'), ('updater', 'updater'),
                 ('sync', 'show_sync'), ('md5', 'md5'),
                 ('quarantined', 'quarantined'), ('disk', 'disk'))


def chosen_sections(conf):
    chosen = [section for section, dest in SECTION_FLAGS
              if getattr(conf, dest)]
    if conf.all or not chosen:
        return list(recon.SECTIONS)
    return chosen


def make_fetch(conf):
    """``fetch(endpoint, kind) -> (status, data)``, signed, bounded."""
    conf.set_override('conn_timeout', conf.timeout, 'client')
    conf.set_override('node_timeout', conf.timeout, 'client')
    client = direct_client.NodeClient(conf)

    def fetch(endpoint, kind):
        node = {'ip': endpoint['ip'], 'port': endpoint['port'],
                'device': ''}
        path = '/recon/%s' % kind
        try:
            status, _headers, body = client.call(node, 'GET', path)
        except direct_client.NodeError as err:
            raise exceptions.CoordsyncError(
                'GET %s: %s' % (path, str(err).split(': ', 1)[-1])) \
                from None
        if status == 404:
            return status, None
        if status != 200:
            raise exceptions.CoordsyncError('GET %s: %d %s' % (
                path, status, body[:200].decode('utf-8', 'replace')
                .strip()))
        try:
            return status, json.loads(body.decode('utf-8'))
        except ValueError as err:
            raise exceptions.CoordsyncError(
                'GET %s: bad JSON: %s' % (path, err)) from None
    return fetch


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(
        argv, prog=PROG, cli_opts=CLI_OPTS,
        description='Gather recon facts (last passes, async pendings, '
                    'sync lag, ring checksums, quarantines, disk usage) '
                    'from every node in the rings and summarize them.')
    sections = chosen_sections(conf)
    try:
        endpoints = recon.ring_endpoints(conf)
        fetch = make_fetch(conf)
        local = {name: recon.file_md5(path)
                 for name, path in recon.ring_files(conf).items()}
    except exceptions.CoordsyncError as err:
        print('%s: error: %s' % (PROG, err), file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    hosts = recon.gather(endpoints, recon.kinds_of(sections), fetch,
                         direct_client.concurrent_map)
    report = recon.build_report(hosts, sections, local_md5=local)
    if conf.format == 'json':
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(recon.format_text(report))
    return EXIT_PROBLEMS if report['problems'] else EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
