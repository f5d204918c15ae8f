"""Storage policies through the Swift API (over the in-memory cluster of
:mod:`tests.unit.test_proxy`): choosing a container's policy, refusing
to change it, reporting it, and objects going to their policy's ring
and routes."""

import json
import os
import subprocess
import sys

import pytest

from coordsync import exceptions
from coordsync.common import storage_policy
from coordsync.proxy import backend as backend_mod
from coordsync.proxy import server
from tests.unit.test_proxy import Cluster
from tests.unit.test_proxy import make_conf
from tests.unit.test_proxy import make_ring
from tests.unit.test_proxy_sync import SyncCluster

GOLD, SILVER, BRONZE = 0, 1, 2


def three_policies(tmp_path):
    """gold (0, default), silver (1), bronze (2, deprecated)."""
    return storage_policy.StoragePolicies([
        storage_policy.StoragePolicy(0, 'gold', str(tmp_path / 'o0'),
                                     is_default=True),
        storage_policy.StoragePolicy(1, 'silver', str(tmp_path / 'o1')),
        storage_policy.StoragePolicy(2, 'bronze', str(tmp_path / 'o2'),
                                     is_deprecated=True)])


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path, policies=three_policies(tmp_path))


def policies_of(cluster, container):
    """The policy each container replica has (None: no replica, or
    deleted)."""
    return sorted(db['policy'] for (_, _, c), db in
                  cluster.nodes.containers.items()
                  if c == container and not db['deleted'])


def container_puts(cluster):
    """The headers of every container PUT sent to the nodes."""
    return [headers for (_, method, path), headers in zip(
        cluster.nodes.requests, cluster.nodes.sent, strict=True)
        if method == 'PUT' and path.startswith('/containers')]


def object_requests(cluster, since=0):
    return [r for r in cluster.nodes.requests[since:]
            if r[2].startswith('/objects')]


# -- /info --------------------------------------------------------------------

def test_info_lists_every_policy(cluster):
    status, _, body = cluster.call('GET', '/info')
    assert status == 200
    assert json.loads(body)['swift']['policies'] == [
        {'name': 'gold', 'aliases': 'gold', 'default': True},
        {'name': 'silver', 'aliases': 'silver'},
        {'name': 'bronze', 'aliases': 'bronze', 'deprecated': True}]


def test_info_of_a_single_policy_cluster(tmp_path):
    status, _, body = Cluster(tmp_path).call('GET', '/info')
    assert json.loads(body)['swift']['policies'] == [
        {'name': 'Policy-0', 'aliases': 'Policy-0', 'default': True}]


# -- container PUT ------------------------------------------------------------

def test_put_picks_the_named_policy_any_case(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'SiLvEr'})[0] == 201
    assert policies_of(cluster, 'c') == [SILVER] * 3
    status, headers, _ = cluster.api('HEAD', '/c')
    assert (status, headers['X-Storage-Policy']) == (204, 'silver')
    status, headers, _ = cluster.api('GET', '/c')
    assert headers['X-Storage-Policy'] == 'silver'


def test_put_without_a_policy_gets_the_default(cluster):
    assert cluster.api('PUT', '/c')[0] == 201
    assert policies_of(cluster, 'c') == [GOLD] * 3
    assert cluster.api('HEAD', '/c')[1]['X-Storage-Policy'] == 'gold'
    # The default is sent as such: only a new container takes it.
    sent = container_puts(cluster)
    assert len(sent) == 3
    for headers in sent:
        assert headers['X-Backend-Storage-Policy-Default'] == '0'
        assert 'X-Backend-Storage-Policy-Index' not in headers


def test_put_naming_a_policy_sends_its_index(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    sent = container_puts(cluster)
    assert [h['X-Backend-Storage-Policy-Index'] for h in sent] == ['1'] * 3
    assert not [h for h in sent if 'X-Backend-Storage-Policy-Default' in h]


def test_put_again_without_a_policy_keeps_the_policy(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/c')[0] == 202
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 202
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': ''})[0] == 202
    assert policies_of(cluster, 'c') == [SILVER] * 3


def test_put_of_another_policy_is_409_nothing_changed(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    before = cluster.state()
    status, _, body = cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'gold', 'X-Container-Meta-A': 'b'})
    assert status == 409
    assert body == b'Container exists with another storage policy\n'
    assert cluster.state() == before
    assert cluster.api('HEAD', '/c')[1]['X-Storage-Policy'] == 'silver'


@pytest.mark.parametrize('name', ['platinum', 'gold ', 'Policy-0', '0'])
def test_put_of_an_unknown_policy_is_400_nothing_changed(cluster, name):
    before = cluster.state()
    writes = len(cluster.nodes.requests)
    status, _, body = cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': name})
    assert status == 400
    assert body == ("Invalid X-Storage-Policy '%s'\n" % name).encode()
    assert cluster.state() == before
    assert len(cluster.nodes.requests) == writes


def test_deprecated_policy_refused_for_a_new_container(cluster):
    before = cluster.state()
    status, _, body = cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'Bronze'})
    assert (status, body) == (400,
                              b"Storage Policy 'bronze' is deprecated\n")
    assert cluster.state() == before


def test_deprecated_policy_kept_by_an_existing_container(cluster):
    # Made when bronze was not deprecated yet.
    for node in cluster.container_ring.get_nodes('AUTH_test', 'c')[1]:
        cluster.nodes.containers[(node['node'], 'AUTH_test', 'c')] = {
            'deleted': False, 'put': '1.00000', 'objects': {},
            'policy': BRONZE, 'meta': {}}
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'bronze'})[0] == 202
    assert cluster.api('HEAD', '/c')[1]['X-Storage-Policy'] == 'bronze'
    assert cluster.api('PUT', '/c/o', body=b'old')[0] == 201
    assert cluster.api('GET', '/c/o')[2] == b'old'
    assert {r[2].split('/')[1] for r in object_requests(cluster)} == {
        'objects-2'}


def test_recreate_takes_the_new_policy_or_the_default(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('DELETE', '/c')[0] == 204
    assert cluster.api('PUT', '/c')[0] == 201
    assert policies_of(cluster, 'c') == [GOLD] * 3
    assert cluster.api('DELETE', '/c')[0] == 204
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert policies_of(cluster, 'c') == [SILVER] * 3


# -- container POST -----------------------------------------------------------

def test_post_cannot_change_the_policy(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    before = cluster.state()
    status, _, body = cluster.api('POST', '/c', headers={
        'X-Storage-Policy': 'gold', 'X-Container-Meta-A': 'b'})
    assert status == 400
    assert body.startswith(b'Will not change policy')
    assert body.count(b'\n') == 1
    assert cluster.state() == before


def test_post_naming_the_same_policy_changes_metadata(cluster):
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('POST', '/c', headers={
        'X-Storage-Policy': 'SILVER', 'X-Container-Meta-A': 'b'})[0] == 204
    headers = cluster.api('HEAD', '/c')[1]
    assert (headers['X-Container-Meta-A'], headers['X-Storage-Policy']) \
        == ('b', 'silver')


def test_post_with_an_unknown_policy_is_400(cluster):
    assert cluster.api('PUT', '/c')[0] == 201
    before = cluster.state()
    assert cluster.api('POST', '/c', headers={
        'X-Storage-Policy': 'nope'})[0] == 400
    assert cluster.state() == before


def test_swift_post_creates_a_container_of_the_policy(cluster):
    """python-swiftclient's ``swift post -H "X-Storage-Policy: silver"
    c``: a POST, then on its 404 a PUT with the same headers."""
    headers = {'X-Storage-Policy': 'silver'}
    assert cluster.api('POST', '/c', headers=headers)[0] == 404
    assert cluster.api('PUT', '/c', headers=headers)[0] == 201
    # ``swift stat c``
    assert cluster.api('HEAD', '/c')[1]['X-Storage-Policy'] == 'silver'
    # Again: the container exists, the POST goes through.
    assert cluster.api('POST', '/c', headers=headers)[0] == 204


# -- objects ------------------------------------------------------------------

def test_objects_go_to_their_containers_policy(cluster):
    assert cluster.api('PUT', '/s', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/g')[0] == 201
    start = len(cluster.nodes.requests)
    assert cluster.api('PUT', '/s/o', body=b'silver!')[0] == 201
    silver = object_requests(cluster, start)
    part, nodes = cluster.object_rings[SILVER].get_nodes(
        'AUTH_test', 's', 'o')
    assert sorted((r[0], r[2]) for r in silver) == sorted(
        (n['node'], '/objects-1/%s/%d/AUTH_test/s/o' % (n['device'], part))
        for n in nodes)
    stored = {k for k in cluster.nodes.objects if k[3:] == ('s', 'o')}
    assert {k[1] for k in stored} == {SILVER}
    start = len(cluster.nodes.requests)
    assert cluster.api('PUT', '/g/o', body=b'gold!')[0] == 201
    assert {r[2].split('/')[1] for r in object_requests(cluster, start)} \
        == {'objects'}
    # Reads, metadata, listings and deletes of the silver object.
    start = len(cluster.nodes.requests)
    assert cluster.api('GET', '/s/o')[2] == b'silver!'
    assert cluster.api('HEAD', '/s/o')[0] == 200
    assert cluster.api('POST', '/s/o', headers={
        'X-Object-Meta-Color': 'grey'})[0] == 202
    status, headers, body = cluster.api('GET', '/s/o')
    assert (headers['X-Object-Meta-Color'], body) == ('grey', b'silver!')
    listing = json.loads(cluster.api('GET', '/s', query='format=json')[2])
    assert [r['name'] for r in listing] == ['o']
    assert cluster.api('DELETE', '/s/o')[0] == 204
    assert cluster.api('GET', '/s/o')[0] == 404
    assert {r[2].split('/')[1] for r in object_requests(cluster, start)} \
        == {'objects-1'}
    assert cluster.api('GET', '/g/o')[2] == b'gold!'


def test_object_rows_recorded_under_the_policy(cluster):
    assert cluster.api('PUT', '/s', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/s/o', body=b'x')[0] == 201
    for db in (db for (_, _, c), db in cluster.nodes.containers.items()
               if c == 's'):
        assert list(db['objects']) == [('o', SILVER)]
    assert cluster.api('HEAD', '/s')[1]['X-Container-Object-Count'] == '1'


def test_object_of_an_unknown_policy_is_503(tmp_path):
    cluster = Cluster(tmp_path, policies=three_policies(tmp_path))
    assert cluster.api('PUT', '/c')[0] == 201
    for db in cluster.nodes.containers.values():
        db['policy'] = 7
    before = cluster.state()
    for method in ('PUT', 'GET', 'HEAD', 'POST', 'DELETE'):
        status, _, body = cluster.api(method, '/c/o', body=b'x')
        assert status == 503, method
        if method != 'HEAD':
            assert body == (b'container has storage policy 7, unknown to '
                            b'this proxy\n')
    assert cluster.state() == before
    assert not object_requests(cluster)
    # The container itself is still shown, without a policy name.
    status, headers, _ = cluster.api('HEAD', '/c')
    assert status == 204 and 'X-Storage-Policy' not in headers


def test_object_of_a_policy_without_ring_is_503(tmp_path):
    cluster = Cluster(tmp_path, policies=three_policies(tmp_path))
    del cluster.backend.object_rings[SILVER]
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/c/o', body=b'x')[0] == 503
    assert not object_requests(cluster)


def test_object_in_a_missing_container_is_404(cluster):
    for method in ('GET', 'HEAD', 'PUT', 'DELETE', 'POST'):
        assert cluster.api(method, '/nope/o', body=b'x')[0] == 404, method
    assert not object_requests(cluster)


def test_swift_upload_into_a_container_of_policy_1(cluster):
    """``swift upload c f`` PUTs the container without a policy (to be
    sure it exists), then the object: the container keeps its policy
    and the object goes to it; ``swift download`` reads it back."""
    assert cluster.api('PUT', '/c', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/c')[0] == 202
    assert cluster.api('PUT', '/c/dir/f.txt', body=b'data',
                       headers={'ETag': '8d777f385d3dfec8815d20f7496026dc'}
                       )[0] == 201
    assert cluster.api('GET', '/c/dir/f.txt')[2] == b'data'
    assert {k[1] for k in cluster.nodes.objects} == {SILVER}


# -- accounts -----------------------------------------------------------------

def test_account_shows_per_policy_figures(cluster):
    assert cluster.api('PUT', '/a', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/b', headers={
        'X-Storage-Policy': 'silver'})[0] == 201
    assert cluster.api('PUT', '/c')[0] == 201
    for method in ('HEAD', 'GET'):
        headers = cluster.api(method, '')[1]
        assert headers['X-Account-Storage-Policy-Silver-Container-Count'] \
            == '2'
        assert headers['X-Account-Storage-Policy-Gold-Container-Count'] \
            == '1'
        assert headers['X-Account-Storage-Policy-Gold-Object-Count'] == '0'
        assert headers['X-Account-Storage-Policy-Gold-Bytes-Used'] == '0'
        assert not [k for k in headers if 'backend' in k.lower()]


def test_account_figures_of_an_unknown_policy_left_out(cluster):
    cluster.api('PUT', '/c')
    for acct in cluster.nodes.accounts.values():
        acct['containers']['x'] = 9
    headers = cluster.api('HEAD', '')[1]
    assert not [k for k in headers if '9' in k or 'backend' in k.lower()]


# -- container sync into a container of another policy ------------------------

def test_sync_requests_write_to_the_destinations_policy(tmp_path):
    cluster = SyncCluster(tmp_path, policies=three_policies(tmp_path),
                          dest_headers={'X-Storage-Policy': 'silver'})
    when = '1600000000.00000'
    status, _, _ = cluster.sync('PUT', '/dest/o', cluster.signed(
        'PUT', '/dest/o', when), body=b'synced')
    assert status == 201
    assert {k[1] for k in cluster.nodes.objects} == {SILVER}
    status, headers, body = cluster.sync('GET', '/dest/o', cluster.signed(
        'GET', '/dest/o'))
    assert (status, headers['X-Timestamp'], body) == (200, when,
                                                       b'synced')
    later = '1600000001.00000'
    assert cluster.sync('DELETE', '/dest/o', cluster.signed(
        'DELETE', '/dest/o', later))[0] == 204
    status, headers, _ = cluster.sync('HEAD', '/dest/o', cluster.signed(
        'HEAD', '/dest/o'))
    assert (status, headers['X-Backend-Timestamp']) == (404, later)
    assert {r[2].split('/')[1] for r in object_requests(cluster)} == {
        'objects-1'}


# -- loading ------------------------------------------------------------------

def test_backend_takes_one_ring_as_policy_0(tmp_path):
    ring = make_ring(tmp_path / 'object.ring.json')
    backend = backend_mod.Backend(None, ring, None, None)
    assert backend.object_rings == {0: ring}
    assert backend.ring_of(0) is ring
    with pytest.raises(backend_mod.UnknownPolicy):
        backend.ring_of(1)


def _conf_with_policies(tmp_path, silver_ring=True):
    for kind in ('object', 'container', 'account'):
        make_ring(tmp_path / ('%s.ring.json' % kind))
    if silver_ring:
        make_ring(tmp_path / 'object-1.ring.json')
    path = tmp_path / 'proxy.conf'
    path.write_text(
        '[DEFAULT]\nring_file = %s\ncontainer_ring_file = %s\n'
        'account_ring_file = %s\n\n'
        '[storage-policy:0]\nname = gold\ndefault = true\n\n'
        '[storage-policy:1]\nname = silver\n' % (
            tmp_path / 'object.ring.json', tmp_path / 'container.ring.json',
            tmp_path / 'account.ring.json'))
    conf = make_conf()
    conf(['--config-file', str(path)], default_config_files=[])
    storage_policy.register_opts(conf)
    conf.set_override('cluster_secret', 'unit-secret')
    return conf


def test_from_conf_loads_a_ring_per_policy(tmp_path):
    app = server.ProxyApp.from_conf(_conf_with_policies(tmp_path))
    assert sorted(app.backend.object_rings) == [0, 1]
    assert [p.name for p in app.policies] == ['gold', 'silver']
    assert app.policies.default.name == 'gold'


def test_from_conf_missing_ring_is_one_line_config_error(tmp_path):
    conf = _conf_with_policies(tmp_path, silver_ring=False)
    with pytest.raises(exceptions.CoordsyncError) as caught:
        server.ProxyApp.from_conf(conf)
    message = str(caught.value)
    assert '\n' not in message
    assert 'object-1.ring.json' in message
    assert '[storage-policy:1]' in message


def test_proxy_command_exits_2_with_one_line_on_a_missing_ring(tmp_path):
    _conf_with_policies(tmp_path, silver_ring=False)
    path = tmp_path / 'proxy.conf'
    path.write_text(path.read_text().replace(
        '[DEFAULT]\n', '[DEFAULT]\ncluster_secret = unit-secret\n'))
    done = subprocess.run(
        [sys.executable, '-m', 'coordsync.cmd.proxy', '--config-file',
         str(path)], capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count('\n') == 1, done.stderr
    assert done.stderr.startswith('coordsync-proxy: error: '
                                  '[storage-policy:1] ring file ')
    assert 'object-1.ring.json' in done.stderr
