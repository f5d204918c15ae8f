"""A three-server ZooKeeper ensemble named both ways ``backend_url`` may
list several hosts: a node joins through ``zookeeper://a,b,c`` and
coordsync-status, reading through ``zookeeper://a?hosts=b&hosts=c``,
lists it; then the ensemble's leader dies and the node is listed again
through the survivors.
"""

from tests.functional import harness
from tests.functional import nodes
from tests.functional import zookeeper

# Bounds of the waits, not speeds: an ensemble electing a new leader and
# a member's session moving to a survivor on a loaded 2-core machine.
REJOIN_WAIT = 60


def test_several_hosts_in_backend_url_both_forms(tmp_path):
    ensemble = zookeeper.ZooKeeperEnsemble(str(tmp_path / 'ensemble'))
    ensemble.start()
    try:
        comma = 'zookeeper://%s' % ','.join(
            '127.0.0.1:%d' % ensemble.client_ports[i] for i in ensemble.ids)
        cluster = harness.Group(str(tmp_path / 'nodes'), comma)
        status_conf = nodes.write_config(str(tmp_path / 'status.conf'), {
            'DEFAULT': {'state_path': str(tmp_path / 'status-state')},
            'coordination': {'backend_url': ensemble.url,
                             'group': cluster.group}})
        try:
            cluster.start_node('n1')
            nodes.wait_for(lambda: nodes.member_nodes(status_conf) == ['n1'],
                           REJOIN_WAIT, message='n1 listed via ?hosts=')
            code, out, err = nodes.run_status(status_conf)
            assert code == 0, (out, err)
            ensemble.kill(ensemble.leader())
            nodes.wait_for(lambda: nodes.member_nodes(status_conf) == ['n1'],
                           REJOIN_WAIT, message='n1 listed after the '
                           'leader died')
        finally:
            cluster.stop()
    finally:
        ensemble.stop()
