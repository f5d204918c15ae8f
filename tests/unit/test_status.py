from coordsync.common import status

NOW = 1_000_000.0


def caps(node, updated_ago=1.0, **progress):
    return {'node': node, 'host': 'h', 'pid': 42, 'version': '1.0',
            'started_at': NOW - 3600, 'updated_at': NOW - updated_ago,
            'roles': ['server'], 'progress': progress}


def report(members, **kwargs):
    kwargs.setdefault('stale_after', 30)
    return status.build_report(members, group='g', now=NOW, **kwargs)


def test_fresh_members_are_healthy():
    result = report({'a@h.1': caps('a'), 'b@h.2': caps('b')}, expect=2)
    assert result['state'] == status.HEALTHY
    assert [r['node'] for r in result['members']] == ['a', 'b']
    assert result['members'][0]['uptime'] == 3600
    assert status.EXIT_CODES[result['state']] == 0


def test_missing_member_degrades():
    result = report({'a@h.1': caps('a')}, expect=3)
    assert result['state'] == status.DEGRADED
    assert result['problems'] == ['1 members present, 3 expected']


def test_stale_member_degrades():
    result = report({'a@h.1': caps('a', updated_ago=120)})
    assert result['state'] == status.DEGRADED
    assert result['members'][0]['state'] == 'degraded'
    assert 'stale' in result['problems'][0]


def test_worker_errors_degrade_and_show_in_summary():
    member = caps('a', replicator={'pass': 2, 'done': 5, 'total': 9,
                                   'errors': 3})
    result = report({'a@h.1': member})
    assert result['state'] == status.DEGRADED
    assert result['members'][0]['progress_summary'] == \
        'replicator pass 2 5/9 err 3'
    assert 'replicator reports 3 errors' in result['problems'][0]


def test_empty_group_is_degraded():
    assert report({})['state'] == status.DEGRADED


def test_table_lists_members_and_verdict():
    text = status.format_table(report({'a@h.1': caps('a')}, expect=1))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ['MEMBER', 'NODE', 'HOST']
    assert lines[1].split()[:3] == ['a@h.1', 'a', 'h']
    assert lines[-1] == 'group g: healthy, 1 member(s)'


def test_ring_node_without_member_degrades():
    result = report({'a@h.1': caps('a')}, expected_nodes=['a', 'b'])
    assert result['state'] == status.DEGRADED
    assert result['problems'] == [
        'node b (in the ring) has no member in the group']
    assert report({'a@h.1': caps('a')},
                  expected_nodes=['a'])['state'] == status.HEALTHY
