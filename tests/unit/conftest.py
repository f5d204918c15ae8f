import os

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.obj import diskfile
from tests.unit import fakes
from tests.unit.node_fixtures import SECRET


@pytest.fixture
def clock():
    return fakes.Clock()


# The node config and object store of the node-server tests (a module
# defining its own ``conf`` uses that one).
@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('cluster_secret', SECRET)
    conf.set_override('devices', str(tmp_path / 'devices'))
    conf.set_override('state_path', str(tmp_path / 'state'))
    conf.set_override('hash_path_prefix', 'pre')
    conf.set_override('hash_path_suffix', 'suf')
    return conf


@pytest.fixture
def manager(conf):
    os.makedirs(os.path.join(conf.devices, 'sda'))
    return diskfile.DiskFileManager(conf.devices, hash_prefix='pre',
                                    hash_suffix='suf')
