import hashlib

import pytest

from coordsync import exceptions
from coordsync.common import hashing


def test_hash_is_salted_md5_of_the_path():
    expected = hashlib.md5(b'pre/AUTH_a/c/o/xsuf').hexdigest()
    assert hashing.hash_path('AUTH_a', 'c', 'o/x', prefix='pre',
                             suffix='suf') == expected


def test_salts_change_placement():
    plain = hashing.hash_path('a', 'c', 'o')
    assert hashing.hash_path('a', 'c', 'o', prefix='p') != plain
    assert hashing.hash_path('a', 'c', 'o', suffix='s') != plain


def test_account_and_container_paths():
    assert hashing.hash_path('a') == hashlib.md5(b'/a').hexdigest()
    assert hashing.hash_path('a', 'c') == hashlib.md5(b'/a/c').hexdigest()


@pytest.mark.parametrize('args', [('', 'c', 'o'), ('a', None, 'o')])
def test_incomplete_paths_rejected(args):
    with pytest.raises(exceptions.CoordsyncError):
        hashing.hash_path(*args)


def test_partition_is_the_top_bits():
    name_hash = 'f0' + '0' * 30
    assert hashing.partition_of(name_hash, 4) == 0xf
    assert hashing.partition_of(name_hash, 8) == 0xf0
    assert hashing.partition_of('ff' * 16, 1) == 1


def test_partitions_spread_evenly():
    counts = [0] * 16
    for i in range(16000):
        counts[hashing.partition_of(hashing.hash_path('a', 'c', str(i)),
                                    4)] += 1
    assert min(counts) > 800 and max(counts) < 1200


def test_suffix_is_last_three_hex_digits():
    assert hashing.suffix_of('0123456789abcdef0123456789abcdef') == 'def'
