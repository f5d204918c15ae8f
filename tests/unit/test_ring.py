"""The ring builder's placement guarantees and the ring file's defences."""

import collections
import itertools
import json
import os
import stat

import pytest

from coordsync import exceptions
from coordsync.common import hashing
from coordsync.common.ring import Ring
from coordsync.common.ring import RingBuilder
from coordsync.common.ring import ring as ring_file


def make_builder(part_power, replicas, nodes, weights=(1.0,)):
    """A builder with ``weights`` devices on each ``(node, zone[, region])``.

    Device ``i`` of a node is ``sd<letter>`` with weight ``weights[i]``.
    """
    builder = RingBuilder(part_power, replicas)
    for number, (node, zone, *region) in enumerate(nodes):
        for index, weight in enumerate(weights):
            builder.add_device(node, '10.0.0.%d' % (number + 1), 6200,
                               'sd' + 'abcdefgh'[index], weight, zone=zone,
                               region=region[0] if region else 0)
    return builder


def grid(zones, nodes_per_zone):
    return [('z%dn%d' % (zone, node), zone)
            for zone in range(zones) for node in range(nodes_per_zone)]


def columns(builder):
    """The device ids of each partition."""
    return list(zip(*builder.assignment, strict=True))


def tiers(builder, key):
    by_id = {dev['id']: dev for dev in builder.devices}
    return [[key(by_id[dev_id]) for dev_id in column]
            for column in columns(builder)]


def moved_per_partition(old, new):
    return [sum(a != b for a, b in zip(o, n, strict=True))
            for o, n in zip(zip(*old, strict=True), zip(*new, strict=True),
                            strict=True)]


# -- placement -------------------------------------------------------------


def test_replicas_on_distinct_nodes_and_zones():
    builder = make_builder(10, 3, grid(3, 2), weights=(1.0, 2.0))
    result = builder.rebalance()
    assert result.undispersed == 0
    for nodes in tiers(builder, lambda dev: dev['node']):
        assert len(set(nodes)) == 3
    for zones in tiers(builder, lambda dev: dev['zone']):
        assert sorted(zones) == [0, 1, 2]


def test_more_zones_than_replicas_still_spreads():
    builder = make_builder(10, 3, grid(4, 3))
    assert builder.rebalance().undispersed == 0
    for zones in tiers(builder, lambda dev: dev['zone']):
        assert len(set(zones)) == 3


def test_regions_are_spread_before_zones():
    nodes = [('r%dz%d' % (region, zone), zone, region)
             for region in range(2) for zone in range(2)]
    builder = make_builder(10, 3, nodes)
    builder.rebalance()
    for regions in tiers(builder, lambda dev: dev['region']):
        assert set(regions) == {0, 1}


def test_partition_counts_follow_weights():
    builder = make_builder(10, 3, grid(3, 2), weights=(1.0, 2.0))
    result = builder.rebalance()
    counts, ideals = builder.part_counts(), builder.ideal_parts()
    # 3072 replicas over total weight 18: ideals are 170.67 and 341.33,
    # so rounding is the only deviation allowed (one partition-replica).
    for dev_id, ideal in ideals.items():
        assert abs(counts[dev_id] - ideal) < 1
    assert result.balance < 0.4
    light = [counts[d['id']] for d in builder.devices if d['weight'] == 1]
    heavy = [counts[d['id']] for d in builder.devices if d['weight'] == 2]
    assert abs(sum(heavy) / sum(light) - 2.0) < 0.01


def test_node_heavier_than_one_replica_per_partition_is_capped():
    # The docstring example: weights 1, 1, 2 over three nodes would ask
    # 1536 of the 1024 partitions of the heavy node.
    builder = RingBuilder(10, 3)
    for node, weight in (('a', 1.0), ('b', 1.0), ('c', 2.0)):
        builder.add_device(node, '10.0.0.1', 6200, 'sdb', weight)
    result = builder.rebalance()
    assert sorted(builder.part_counts().values()) == [1024, 1024, 1024]
    assert result.balance == pytest.approx(100 / 3)


def test_docstring_example_add_moves_only_the_new_share():
    builder = RingBuilder(10, 3)
    for node, zone, weight in (('a', 1, 1.0), ('b', 1, 1.0),
                               ('c', 2, 2.0), ('d', 3, 2.0)):
        builder.add_device(node, '10.0.0.1', 6200, 'sdb', weight, zone=zone)
    builder.rebalance()
    assert list(builder.part_counts().values()) == [512, 512, 1024, 1024]
    builder.add_device('e', '10.0.0.5', 6200, 'sdb', 2.0, zone=4)
    result = builder.rebalance()
    assert list(builder.part_counts().values()) == [384, 384, 768, 768, 768]
    assert result.moved == 768
    assert result.balance == 0


def test_rebalance_again_moves_nothing():
    builder = make_builder(10, 3, grid(3, 2), weights=(1.0, 2.0))
    builder.rebalance()
    before = builder.assignment
    assert builder.rebalance().moved == 0
    assert builder.assignment == before


def test_rebalance_is_deterministic_per_seed():
    first = make_builder(8, 3, grid(3, 2))
    second = make_builder(8, 3, grid(3, 2))
    other = make_builder(8, 3, grid(3, 2))
    first.rebalance()
    second.rebalance()
    other.rebalance(seed=7)
    assert first.assignment == second.assignment
    assert first.assignment != other.assignment


def test_nodes_are_mixed_not_paired():
    # A fixed placement order would pair the same nodes in partition
    # after partition; every cross-zone node pair should occur.
    builder = make_builder(10, 3, grid(3, 2))
    builder.rebalance()
    pairs = collections.Counter()
    for nodes in tiers(builder, lambda dev: dev['node']):
        pairs.update(itertools.combinations(sorted(nodes), 2))
    assert len(pairs) == 12
    # 1024 partitions over 4 pairs per zone pair: 256 each, give or take.
    assert max(pairs.values()) - min(pairs.values()) < 64


def test_replicas_more_than_nodes_is_refused():
    builder = make_builder(6, 3, [('a', 0), ('b', 1)], weights=(1.0, 1.0))
    with pytest.raises(exceptions.RingError, match=r'replicas \(3\) > '
                                                   r'nodes \(2\)'):
        builder.rebalance()
    assert builder.assignment is None


def test_removal_that_leaves_too_few_nodes_changes_nothing():
    builder = make_builder(6, 3, grid(3, 1))
    builder.rebalance()
    before = builder.to_dict()
    builder.remove_device(0)
    with pytest.raises(exceptions.RingError, match='nodes'):
        builder.rebalance()
    assert builder.assignment == before['assignment']
    assert builder.devices[0]['removed'] is True


# -- movement --------------------------------------------------------------


def test_removal_moves_only_the_removed_devices_replicas():
    builder = make_builder(12, 3, grid(3, 2), weights=(1.0, 2.0))
    builder.rebalance()
    old = builder.assignment
    held = builder.part_counts()[5]
    builder.remove_device(5)
    result = builder.rebalance()
    assert result.moved == held
    for old_row, row in zip(old, builder.assignment, strict=True):
        for old_dev, dev in zip(old_row, row, strict=True):
            assert dev == old_dev or old_dev == 5
    assert 5 not in builder.part_counts()
    assert result.balance < 0.1


def test_adding_a_node_moves_only_its_share():
    builder = make_builder(12, 3, grid(3, 2), weights=(1.0, 2.0))
    builder.rebalance()
    old = builder.assignment
    new = builder.add_device('z3n0', '10.0.3.1', 6200, 'sda', 2.0, zone=3)
    result = builder.rebalance()
    assert result.moved == builder.part_counts()[new['id']]
    assert result.moved == round(builder.ideal_parts()[new['id']])
    # Moving two replicas of a partition at once would leave a single
    # serving copy while they are copied.
    assert max(moved_per_partition(old, builder.assignment)) == 1
    assert result.balance < 0.1


def test_adding_a_device_to_a_used_node_moves_little():
    builder = make_builder(12, 3, grid(3, 2), weights=(1.0, 2.0))
    builder.rebalance()
    new = builder.add_device('z0n0', '10.0.0.1', 6200, 'sdc', 2.0, zone=0)
    result = builder.rebalance()
    share = builder.part_counts()[new['id']]
    assert share == round(builder.ideal_parts()[new['id']])
    # The new device's partitions must come from partitions without a
    # replica on its node; a 1% allowance covers the few that need a
    # second move to make room.
    assert share <= result.moved <= share * 1.01
    assert result.balance < 0.1


def test_draining_a_device_empties_it():
    builder = make_builder(10, 3, grid(3, 2), weights=(1.0, 2.0))
    builder.rebalance()
    held = builder.part_counts()[1]
    builder.set_weight(1, 0)
    result = builder.rebalance()
    assert builder.part_counts()[1] == 0
    assert held <= result.moved <= held * 1.02
    assert builder.devices[1]['weight'] == 0.0


# -- builder edits ---------------------------------------------------------


def test_add_device_assigns_next_id_and_validates():
    builder = RingBuilder(4, 1)
    assert builder.add_device('a', '10.0.0.1', 6200, 'sdb', 1)['id'] == 0
    assert builder.add_device('a', '10.0.0.1', 6200, 'sdc', 1,
                              dev_id=7)['id'] == 7
    assert builder.add_device('b', 'host.example', 6200, 'sdb', 1)['id'] == 8
    bad = [
        dict(dev_id=7), dict(device='..'), dict(device='.'),
        dict(device='a/b'), dict(device=''), dict(port=0),
        dict(port=65536), dict(weight=0), dict(weight=-1),
        dict(weight=float('nan')), dict(ip='10.0.0.1/8'),
        dict(node='c d'), dict(zone=-1), dict(dev_id=True),
        dict(node='a', zone=3),  # a node lives in one zone
        dict(node='a', device='sdb'),  # one sdb per node
    ]
    for override in bad:
        args = dict(node='c', ip='10.0.0.3', port=6200, device='sdb',
                    weight=1.0)
        args.update(override)
        with pytest.raises(exceptions.RingError):
            builder.add_device(**args)
    assert [dev['id'] for dev in builder.devices] == [0, 7, 8]


def test_remove_device_marks_a_device_that_holds_partitions():
    builder = make_builder(4, 1, grid(2, 1))
    builder.add_device('spare', '10.0.0.9', 6200, 'sdb', 1.0)
    assert builder.remove_device(2)['removed'] is False
    assert [dev['id'] for dev in builder.devices] == [0, 1]
    builder.rebalance()
    assert builder.remove_device(0)['removed'] is True
    with pytest.raises(exceptions.RingError, match='already'):
        builder.remove_device(0)
    with pytest.raises(exceptions.RingError, match='no device with id 9'):
        builder.remove_device(9)
    with pytest.raises(exceptions.RingError):
        builder.set_weight(0, 1.0)


def test_create_validates_part_power_and_replicas():
    for part_power, replicas in ((0, 3), (25, 3), (10, 0), ('8', 3)):
        with pytest.raises(exceptions.RingError):
            RingBuilder(part_power, replicas)


# -- the ring file ---------------------------------------------------------


@pytest.fixture
def ring_path(tmp_path):
    builder = make_builder(8, 3, grid(4, 1), weights=(1.0, 1.0))
    builder.add_device('z3n0', '10.0.0.4', 6200, 'sdz', 1.0, zone=3,
                       dev_id=20)
    builder.rebalance()
    path = str(tmp_path / 'object.ring')
    builder.save(path)
    return path


def test_save_is_atomic_and_keeps_mode(ring_path):
    os.chmod(ring_path, 0o640)
    RingBuilder.load(ring_path).save(ring_path)
    assert stat.S_IMODE(os.stat(ring_path).st_mode) == 0o640
    assert os.listdir(os.path.dirname(ring_path)) == ['object.ring']


def test_round_trip(ring_path):
    builder = RingBuilder.load(ring_path)
    with open(ring_path) as f:
        assert json.load(f) == builder.to_dict()
    assert builder.to_dict()['format'] == 'coordsync-ring'


def test_ring_lookups(ring_path):
    ring = Ring(ring_path, hash_prefix='pre', hash_suffix='suf')
    assert (ring.part_power, ring.replicas) == (8, 3)
    assert ring.partition_count == 256
    assert [dev['id'] for dev in ring.devices if dev] == list(range(8)) + [20]
    assert ring.devices[10] is None
    name_hash = hashing.hash_path('a', 'c', 'o', prefix='pre', suffix='suf')
    part = ring.get_part('a', 'c', 'o')
    assert part == hashing.partition_of(name_hash, 8)
    unsalted = hashing.partition_of(hashing.hash_path('a', 'c', 'o'), 8)
    assert Ring(ring_path).get_part('a', 'c', 'o') == unsalted
    got_part, nodes = ring.get_nodes('a', 'c', 'o')
    assert got_part == part
    assert [dev['index'] for dev in nodes] == [0, 1, 2]
    assert len({dev['node'] for dev in nodes}) == 3
    assert nodes == ring.get_part_nodes(part)
    assert 'index' not in ring.devices[nodes[0]['id']]


def test_partitions_for_device_match_primaries(ring_path):
    ring = Ring(ring_path)
    total = 0
    for dev in filter(None, ring.devices):
        parts = ring.partitions_for_device(dev['id'])
        assert parts == sorted(parts)
        total += len(parts)
        for part in parts[:20]:
            index = ring.replica_index(part, dev['id'])
            assert ring.get_part_nodes(part)[index]['id'] == dev['id']
    assert total == 256 * 3
    part = ring.partitions_for_device(0)[0]
    others = [d['id'] for d in ring.get_part_nodes(part)]
    outsider = next(d['id'] for d in ring.devices
                    if d and d['id'] not in others)
    assert ring.replica_index(part, outsider) is None
    with pytest.raises(exceptions.RingError, match='no device'):
        ring.partitions_for_device(10)


def test_devices_on_node(ring_path):
    ring = Ring(ring_path)
    assert [dev['device'] for dev in ring.devices_on_node('z3n0')] == [
        'sda', 'sdb', 'sdz']
    assert ring.devices_on_node('nowhere') == []


def test_handoffs_avoid_primaries_and_prefer_new_zones(ring_path):
    ring = Ring(ring_path)
    for part in range(ring.partition_count):
        primaries = ring.get_part_nodes(part)
        handoffs = list(ring.get_more_nodes(part))
        assert len(handoffs) == 9 - 3
        ids = [dev['id'] for dev in handoffs]
        assert not set(ids) & {dev['id'] for dev in primaries}
        assert [dev['handoff_index'] for dev in handoffs] == list(range(6))
        # Four single-node zones, three primaries: the first handoff is
        # in the zone holding no copy; then each zone holds one copy, so
        # the next four go round-robin, one per zone.
        used = {dev['zone'] for dev in primaries}
        assert handoffs[0]['zone'] not in used
        assert {dev['zone'] for dev in handoffs[1:5]} == {0, 1, 2, 3}
        assert ids == [dev['id'] for dev in Ring(ring_path)
                       .get_more_nodes(part)]


def test_handoffs_skip_removed_and_drained_devices(ring_path):
    builder = RingBuilder.load(ring_path)
    builder.set_weight(1, 0)
    builder.remove_device(2)
    builder.save(ring_path)
    ring = Ring(ring_path)
    for part in range(16):
        ids = {dev['id'] for dev in ring.get_more_nodes(part)}
        assert not ids & {1, 2}
    # Until the next rebalance both still serve their partitions.
    assert ring.partitions_for_device(1) and ring.partitions_for_device(2)
    assert ring.devices[2]['removed'] is True


def test_lookups_need_a_rebalanced_ring(tmp_path):
    path = str(tmp_path / 'new.ring')
    make_builder(4, 1, grid(1, 1)).save(path)
    ring = Ring.load(path)
    assert 0 <= ring.get_part('a') < 16
    with pytest.raises(exceptions.RingError, match='not been rebalanced'):
        ring.get_part_nodes(0)
    with pytest.raises(exceptions.RingError, match='not been rebalanced'):
        ring.get_more_nodes(0)
    with pytest.raises(exceptions.RingError, match='not been rebalanced'):
        ring.partitions_for_device(0)


def test_partition_out_of_range(ring_path):
    ring = Ring(ring_path)
    for part in (-1, 256, True, '1'):
        with pytest.raises(exceptions.RingError, match='out of range'):
            ring.get_part_nodes(part)


def test_has_changed_and_reload(ring_path):
    ring = Ring(ring_path)
    assert not ring.has_changed()
    builder = RingBuilder.load(ring_path)
    builder.add_device('z9n0', '10.0.0.9', 6200, 'sda', 1.0, zone=9)
    builder.rebalance()
    builder.save(ring_path)
    assert ring.has_changed()
    ring.reload()
    assert not ring.has_changed()
    assert ring.devices_on_node('z9n0')
    os.unlink(ring_path)
    assert ring.has_changed()


def test_failed_reload_keeps_the_loaded_ring(ring_path):
    ring = Ring(ring_path)
    nodes = ring.get_part_nodes(3)
    with open(ring_path, 'w') as f:
        f.write('{"format": "coordsync-ring", ')
    with pytest.raises(exceptions.RingError, match='not valid JSON'):
        ring.reload()
    assert ring.get_part_nodes(3) == nodes


def _corrupt(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def _set(key, value):
    def change(data):
        data[key] = value
    return change


def _set_device(field, value):
    def change(data):
        data['devices'][0][field] = value
    return change


def _set_slot(replica, part, value):
    def change(data):
        data['assignment'][replica][part] = value
    return change


def _same_node_twice(data):
    data['assignment'][1][0] = data['assignment'][0][0]


@pytest.mark.parametrize('change, message', [
    (_set('version', 2), 'unsupported ring version 2'),
    (_set('version', True), 'unsupported ring version True'),
    (_set('format', 'swift'), 'not a coordsync ring'),
    (_set('part_power', 30), 'part_power must be an integer 1..24'),
    (_set('replicas', 2), 'assignment must be a list of 2 replica rows'),
    (_set('devices', {}), 'devices must be a list'),
    (_set('extra', 1), r"unknown fields \['extra'\]"),
    (lambda data: data.pop('assignment'), r"missing fields \['assign"),
    (_set_device('port', '6200'), 'port must be an integer'),
    (_set_device('device', '../etc'), 'device must match'),
    (_set_device('weight', -1), 'weight must be a finite number'),
    (_set_device('id', 20), 'device id 20 is used twice'),
    (_set_slot(0, 5, 99), r'unknown device ids \[99\]'),
    (_set_slot(0, 5, 1.0), 'non-integer device id'),
    (_set_slot(2, 0, None), 'non-integer device id'),
    (lambda data: data['assignment'][1].pop(), 'must list 256 partitions'),
    (_same_node_twice, 'partition 0 has two replicas on one node'),
])
def test_invalid_ring_files_raise_ring_error(ring_path, change, message):
    _corrupt(ring_path, change)
    with pytest.raises(exceptions.RingError, match=message) as caught:
        Ring(ring_path)
    assert str(caught.value).startswith('invalid ring file %s: ' % ring_path)
    assert '\n' not in str(caught.value)
    with pytest.raises(exceptions.RingError, match=message):
        RingBuilder.load(ring_path)


@pytest.mark.parametrize('content, message', [
    (b'', 'not valid JSON'),
    (b'{"format": "coordsync-ring", "version": 1, "devi', 'not valid JSON'),
    (b'\xff\xfe', 'not valid JSON'),
    (b'[1, 2]', 'a ring must be a JSON object'),
])
def test_undecodable_ring_files_raise_ring_error(tmp_path, content, message):
    path = tmp_path / 'bad.ring'
    path.write_bytes(content)
    with pytest.raises(exceptions.RingError, match=message):
        Ring(str(path))


def test_missing_ring_file(tmp_path):
    with pytest.raises(exceptions.RingError,
                       match='cannot read ring file .*No such file'):
        Ring(str(tmp_path / 'absent.ring'))


def test_validate_device_normalises():
    dev = ring_file.validate_device({
        'id': 1, 'region': 0, 'zone': 2, 'node': 'n', 'ip': '::1',
        'port': 1, 'device': 'sdb', 'weight': 3})
    assert dev['weight'] == 3.0 and isinstance(dev['weight'], float)
    assert dev['removed'] is False


# -- min_part_hours --------------------------------------------------------

T0 = 1_700_000_000
HOUR = 3600


def test_second_rebalance_within_min_part_hours_moves_no_second_replica():
    builder = make_builder(10, 3, grid(4, 1))
    assert builder.min_part_hours == 1
    builder.rebalance(now=T0)
    first = builder.assignment
    # The first placement is no move: nothing to copy yet.
    assert builder.last_moved is None
    builder.add_device('z4n0', '10.0.4.1', 6200, 'sda', 1.0, zone=4)
    result = builder.rebalance(now=T0 + 60)
    assert result.moved and not result.held_back
    moved_at = builder.last_moved
    assert {t for t in moved_at if t} == {T0 + 60}
    after_add = columns(builder)
    builder.set_weight(4, 3.0)
    builder.add_device('z5n0', '10.0.5.1', 6200, 'sda', 2.0, zone=5)
    for later in (120, 180, 59 * 60):
        result = builder.rebalance(now=T0 + later)
        assert result.held_back > 0
        assert 0 < result.wait <= HOUR
        assert max(moved_per_partition(first, builder.assignment)) == 1
    # Partitions moved at T0 + 60 stayed where they went.
    now = columns(builder)
    for part, when in enumerate(moved_at):
        if when:
            assert now[part] == after_add[part]
    # Once the hour has passed they may move again, a replica at a time:
    # a few rounds reach the balance a fresh build has.
    for hours in range(2, 8):
        builder.rebalance(now=T0 + hours * HOUR)
    assert builder.balance() < 1.0


def test_min_part_hours_never_holds_replicas_on_removed_devices():
    builder = make_builder(8, 3, grid(4, 1))
    builder.rebalance(now=T0)
    builder.add_device('z4n0', '10.0.4.1', 6200, 'sda', 1.0, zone=4)
    builder.rebalance(now=T0 + 60)
    builder.remove_device(0)
    builder.set_weight(1, 0)
    builder.rebalance(now=T0 + 120)
    counts = builder.part_counts()
    assert 0 not in counts and counts[1] == 0


def test_pretend_and_zero_min_part_hours():
    builder = make_builder(8, 3, grid(4, 1))
    builder.rebalance(now=T0)
    builder.add_device('z4n0', '10.0.4.1', 6200, 'sda', 1.0, zone=4)
    builder.rebalance(now=T0)
    builder.set_weight(4, 4.0)
    assert builder.held_partitions(T0)
    assert builder.rebalance(now=T0).held_back
    builder.pretend_min_part_hours_passed()
    assert builder.held_partitions(T0) == {}
    builder.set_min_part_hours(0)
    result = builder.rebalance(now=T0)
    assert result.held_back == 0 and result.moved
    with pytest.raises(exceptions.RingError, match='min_part_hours'):
        builder.set_min_part_hours(-1)
    with pytest.raises(exceptions.RingError, match='min_part_hours'):
        RingBuilder(4, 1, min_part_hours=True)


def test_min_part_hours_round_trip_and_validation(tmp_path):
    builder = make_builder(6, 2, grid(3, 1))
    builder.set_min_part_hours(5)
    builder.rebalance(now=T0)
    builder.add_device('z3n0', '10.0.3.1', 6200, 'sda', 1.0, zone=3)
    builder.rebalance(now=T0 + 1)
    path = str(tmp_path / 'r.ring')
    builder.save(path)
    loaded = RingBuilder.load(path)
    assert loaded.min_part_hours == 5
    assert loaded.last_moved == builder.last_moved
    for key, value, message in (
            ('last_moved', [1, 2], 'last_moved must be a list of 64'),
            ('last_moved', 'x', 'last_moved must be a list'),
            ('min_part_hours', 9999, 'min_part_hours must be an integer')):
        _corrupt(path, _set(key, value))
        with pytest.raises(exceptions.RingError, match=message):
            RingBuilder.load(path)
        # The read side ignores the builder's fields.
        assert Ring(path).get_part_nodes(0)
        builder.save(path)


def test_tiers_and_device_balance():
    builder = make_builder(6, 2, [('a', 1), ('b', 1), ('c', 2)])
    assert builder.tiers() == []
    builder.rebalance()
    tiers = {(t['tier'], t['name']): t for t in builder.tiers()}
    assert tiers[('region', '0')]['histogram'] == [0, 0, 64]
    zone1 = tiers[('zone', '0/1')]
    assert zone1['replicas'] == sum(builder.part_counts()[d] for d in (0, 1))
    assert sum(zone1['histogram']) == 64
    assert tiers[('node', 'c')]['max'] == 1
    assert set(builder.device_balance()) == {0, 1, 2}
