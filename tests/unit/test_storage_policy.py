"""Storage policy declarations: what is accepted, what fails at start."""

import pytest

from coordsync import service
from coordsync.common import storage_policy


def prepare(tmp_path, text, ring_dir=None):
    ring_dir = ring_dir or tmp_path
    path = tmp_path / 'node.conf'
    path.write_text('[DEFAULT]\nring_file = %s/object.ring.json\n%s'
                    % (ring_dir, text))
    return service.prepare_service(['--config-file', str(path)],
                                   prog='coordsync-test')


def test_without_sections_policy_0_is_the_default(tmp_path):
    policies = storage_policy.from_conf(prepare(tmp_path, ''))
    assert len(policies) == 1
    (only,) = policies
    assert (only.index, only.name, only.is_default, only.datadir,
            only.async_dir) == (0, 'Policy-0', True, 'objects',
                                'async_pending')
    assert only.ring_file == str(tmp_path / 'object.ring.json')


def test_two_policies(tmp_path):
    conf = prepare(tmp_path, '[storage-policy:0]\nname = gold\n'
                   '[storage-policy:1]\nname = Silver\ndefault = true\n'
                   '[storage-policy:2]\nname = old\ndeprecated = true\n'
                   'ring_file = /elsewhere/r.json\n')
    policies = storage_policy.from_conf(conf)
    assert policies.indexes() == [0, 1, 2]
    assert policies.default.name == 'Silver'
    assert policies.get_by_name('SILVER').index == 1
    assert policies.get_by_index('1').name == 'Silver'
    assert policies.get_by_index('01') is None
    assert policies.get_by_index(7) is None
    silver = policies.get_by_index(1)
    assert silver.datadir == 'objects-1'
    assert silver.async_dir == 'async_pending-1'
    assert silver.ring_file == str(tmp_path / 'object-1.ring.json')
    assert policies.get_by_index(2).ring_file == '/elsewhere/r.json'
    assert policies.get_by_index(2).is_deprecated
    assert storage_policy.index_of_datadir('objects-2') == 2
    assert storage_policy.index_of_datadir('objects') == 0
    assert storage_policy.index_of_datadir('objects-x') is None


def test_policy_0_is_implied(tmp_path):
    policies = storage_policy.from_conf(prepare(
        tmp_path, '[storage-policy:1]\nname = silver\ndefault = true\n'))
    assert [p.name for p in policies] == ['Policy-0', 'silver']


@pytest.mark.parametrize('text,message', [
    ('[storage-policy:0]\ndefault = true\n[storage-policy:1]\n'
     'default = true\n', 'more than one default storage policy'),
    ('[storage-policy:0]\n[storage-policy:1]\n',
     'no default storage policy'),
    ('[storage-policy:gold]\nname = gold\n', 'is not a storage policy'),
    ('[storage-policy:01]\n', 'is not a storage policy'),
    ('[storage-policy:0]\nname = a\n[storage-policy:1]\nname = A\n'
     'default = true\n', 'is already the name of storage policy 0'),
    ('[storage-policy:0]\nname = bad name\n', 'use 1 to 64 letters'),
    ('[storage-policy:1]\nname = 0\ndefault = true\n',
     'is the index of another policy'),
    ('[storage-policy:0]\ndeprecated = true\n', 'cannot be deprecated'),
    ('[storage-policy:0]\ndefault = maybe\n', 'default'),
])
def test_bad_declarations_exit_2_with_one_line(tmp_path, capsys, text,
                                               message):
    with pytest.raises(SystemExit) as exit_:
        prepare(tmp_path, text)
    assert exit_.value.code == service.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message in err, err


def test_a_missing_ring_is_named(tmp_path):
    conf = prepare(tmp_path, '[storage-policy:0]\ndefault = true\n'
                   '[storage-policy:1]\n')
    (tmp_path / 'object.ring.json').write_text('{}')
    with pytest.raises(storage_policy.PolicyError) as err:
        storage_policy.from_conf(conf).check_rings()
    assert str(err.value) == ('[storage-policy:1] ring file %s does not '
                              'exist' % (tmp_path / 'object-1.ring.json'))

