"""Storage policies on real processes (issue 11).

* A bad policy declaration stops ``coordsync-server``,
  ``coordsync-replicator`` and ``coordsync-proxy`` at start: exit 2 and
  one line on stderr, whichever the mistake (two defaults, a policy
  whose ring file is missing, a section not named by an index).
* On a running 2-policy cluster (0 ``gold``, the default; 1 ``silver``)
  driven by python-swiftclient: a container created with
  ``X-Storage-Policy: silver`` keeps its objects under ``objects-1/``
  only, placed by silver's ring, and lists and serves them; a container
  created without the header is gold's (``objects/``); a container's
  policy cannot be changed by a later PUT (409) and stays as it was.
"""

import os
import subprocess
import urllib.parse

import pytest
from swiftclient import client as swift

from coordsync.cmd import local_cluster as local_cluster_cmd
from tests.functional import nodes

USER, KEY = local_cluster_cmd.TEST_USER, local_cluster_cmd.TEST_KEY


# -- a bad declaration stops every command at start ---------------------------

@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """A 2-policy cluster's directory (configs, rings), never started:
    ``{command: its config files}``."""
    workdir = str(tmp_path_factory.mktemp('bad-policies') / 'cluster')
    args = local_cluster_cmd.parse_args(
        ['--workdir', workdir, 'up', '--nodes', '3', '--part-power', '2',
         '--base-port', str(local_cluster_cmd.free_base_port(3)),
         '--replicate-every', '0'])
    meta = local_cluster_cmd.create(workdir, args)
    local_cluster_cmd._write_proxy_config(workdir, meta)
    node = local_cluster_cmd.node_config_path(workdir, 'n1')
    return workdir, {
        'coordsync.cmd.server': [node],
        'coordsync.cmd.replicator': [node, '--once'],
        'coordsync.cmd.proxy': [local_cluster_cmd.proxy_config_path(
            workdir)],
    }


BAD = {
    # Policy 0 is the default already.
    'two defaults': ({'storage-policy:1': {'default': 'true'}},
                     'more than one default storage policy'),
    'missing ring': ({'storage-policy:2': {'name': 'bronze'}},
                     'object-2.ring.json'),
    'named section': ({'storage-policy:gold': {'name': 'gold'}},
                      '[storage-policy:gold]'),
}
PROGS = {'coordsync.cmd.server': 'coordsync-server',
         'coordsync.cmd.replicator': 'coordsync-replicator',
         'coordsync.cmd.proxy': 'coordsync-proxy'}


@pytest.mark.parametrize('module', sorted(PROGS))
@pytest.mark.parametrize('mistake', sorted(BAD))
def test_bad_policy_config_exits_2_with_one_line(configs, tmp_path, module,
                                                 mistake):
    workdir, argvs = configs
    sections, expected = BAD[mistake]
    overlay = nodes.write_config(str(tmp_path / 'bad.conf'), sections)
    config, *rest = argvs[module]
    before = sorted(os.listdir(workdir))
    try:
        result = subprocess.run(
            nodes.module_argv(module, '--config-file', config,
                              '--config-file', overlay, *rest),
            capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as err:
        pytest.fail('%s started with %s (still running after %ds): %s'
                    % (PROGS[module], mistake, err.timeout,
                       (err.output or b'')[-500:].decode(errors='replace')))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('%s: error: ' % PROGS[module]), lines[0]
    assert expected in lines[0], lines[0]
    assert 'Traceback' not in result.stderr + result.stdout
    assert sorted(os.listdir(workdir)) == before


# -- containers of a policy through the Swift API -----------------------------

@pytest.fixture(scope='module')
def api(zk_policy_cluster):
    cluster = zk_policy_cluster
    conn = swift.Connection(local_cluster_cmd.proxy_auth_url(cluster.meta),
                            USER, KEY, retries=0, timeout=60)
    storage_url, _token = conn.get_auth()
    account = urllib.parse.unquote(
        urllib.parse.urlsplit(storage_url).path.split('/')[2])
    return cluster, conn, account


def put_bodies(conn, container, count):
    bodies = {'obj-%02d' % i: os.urandom(100 + i * 37) for i in range(count)}
    bodies['dir/é'] = b'accented'
    for name, body in bodies.items():
        conn.put_object(container, name, body)
    return bodies


def assert_served(conn, container, bodies):
    _headers, listing = conn.get_container(container, full_listing=True)
    assert [row['name'] for row in listing] == sorted(bodies)
    for name, body in bodies.items():
        assert conn.get_object(container, name)[1] == body, name


def assert_on_disk(cluster, account, container, bodies, policy):
    """Every object has live copies in ``policy`` only, one on each of
    that policy's primaries, and no file at all in another policy."""
    ring = cluster.policy_ring(policy)
    for name in bodies:
        files = cluster.policy_files(container, name, account)
        assert set(files) == {policy}, (name, files)
        part = ring.get_part(account, container, name)
        primaries = {(d['node'], d['device'])
                     for d in ring.get_part_nodes(part)}
        live = cluster.live_policies(container, name, account)[policy]
        assert set(live) == primaries, (name, live, primaries)


def test_container_policy_decides_where_objects_live(api):
    cluster, conn, account = api
    conn.put_container('silver-box', headers={'X-Storage-Policy': 'silver'})
    conn.put_container('gold-box')
    assert conn.head_container('silver-box')['x-storage-policy'] == \
        'silver'
    assert conn.head_container('gold-box')['x-storage-policy'] == 'gold'
    silver = put_bodies(conn, 'silver-box', 12)
    gold = put_bodies(conn, 'gold-box', 4)
    assert_served(conn, 'silver-box', silver)
    assert_served(conn, 'gold-box', gold)
    assert_on_disk(cluster, account, 'silver-box', silver, 1)
    assert_on_disk(cluster, account, 'gold-box', gold, 0)
    # Every container replica has the policy and the rows.
    for node, (status, headers) in cluster.container_heads(
            'silver-box', account).items():
        assert status == 204, (node, status)
        assert headers['x-backend-storage-policy-index'] == '1', node
    for node, rows in cluster.container_listings('silver-box',
                                                 account).items():
        assert [row['name'] for row in rows] == sorted(silver), node


def test_a_container_policy_cannot_change(api):
    cluster, conn, account = api
    conn.put_container('fixed', headers={'X-Storage-Policy': 'SILVER'})
    conn.put_object('fixed', 'kept', b'kept body')
    for other in ('gold', 'Gold'):
        with pytest.raises(swift.ClientException) as err:
            conn.put_container('fixed', headers={'X-Storage-Policy': other})
        assert err.value.http_status == 409, err.value
    # The same policy, or none, is a plain re-PUT.
    for headers in ({'X-Storage-Policy': 'silver'}, {}):
        answer = {}
        conn.put_container('fixed', headers=headers, response_dict=answer)
        assert answer['status'] == 202, answer
    assert conn.head_container('fixed')['x-storage-policy'] == 'silver'
    assert conn.get_object('fixed', 'kept')[1] == b'kept body'
    assert set(cluster.policy_files('fixed', 'kept', account)) == {1}
    for node, (_status, headers) in cluster.container_heads(
            'fixed', account).items():
        assert headers['x-backend-storage-policy-index'] == '1', node


def test_an_unknown_policy_creates_nothing(api):
    cluster, conn, account = api
    with pytest.raises(swift.ClientException) as err:
        conn.put_container('never', headers={'X-Storage-Policy': 'platinum'})
    assert err.value.http_status == 400, err.value
    with pytest.raises(swift.ClientException) as err:
        conn.head_container('never')
    assert err.value.http_status == 404
    assert {node: status for node, (status, _h) in
            cluster.container_heads('never', account).items()} == {
        node: 404 for node in cluster.node_names}
