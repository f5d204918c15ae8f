import time

import pytest

from coordsync.common.timestamp import Timestamp


@pytest.mark.parametrize('value, normal', [
    ('1700000000.12345', '1700000000.12345'),
    ('1700000000', '1700000000.00000'),
    ('1.5', '0000000001.50000'),
    ('0000000001.50000', '0000000001.50000'),
    ('.5', '0000000000.50000'),
    ('0', '0000000000.00000'),
    ('1.123456', '0000000001.12346'),
    ('1.123454', '0000000001.12345'),
    (1700000000.12345, '1700000000.12345'),
    (0.1, '0000000000.10000'),
    (42, '0000000042.00000'),
    ('9999999999.99999', '9999999999.99999'),
])
def test_normal_form(value, normal):
    assert Timestamp(value).normal == normal
    assert str(Timestamp(value)) == normal


def test_spellings_of_one_instant_are_equal():
    spellings = ['1.5', '0000000001.50000', 1.5, '1.500001', Timestamp(1.5)]
    stamps = [Timestamp(s) for s in spellings]
    assert all(s == stamps[0] for s in stamps)
    assert len(set(stamps)) == 1


def test_ordering_follows_value_and_text():
    values = ['10', '9.99999', '0.00001', '1700000000.12345', '2']
    stamps = sorted(Timestamp(v) for v in values)
    assert [float(s) for s in stamps] == sorted(float(v) for v in values)
    # File names rely on the text form sorting like the value.
    assert [s.normal for s in stamps] == sorted(s.normal for s in stamps)
    assert Timestamp('1.00001') > Timestamp('1')
    assert Timestamp('1') <= Timestamp('1.000001')


def test_not_comparable_with_other_types():
    assert Timestamp('1') != '1'
    with pytest.raises(TypeError):
        Timestamp('1') < 2  # noqa: B015


def test_now_uses_the_clock():
    assert Timestamp.now(clock=lambda: 1234.5678912).normal == \
        '0000001234.56789'
    assert abs(float(Timestamp.now()) - time.time()) < 5


def test_repr_and_float():
    stamp = Timestamp('12.25')
    assert repr(stamp) == "Timestamp('0000000012.25000')"
    assert float(stamp) == 12.25


@pytest.mark.parametrize('value, message', [
    ('-1', 'negative'),
    (-0.5, 'negative'),
    ('nan', 'not a decimal'),
    (float('nan'), 'not a finite'),
    (float('inf'), 'not a finite'),
    ('abc', 'not a decimal'),
    ('', 'not a decimal'),
    (' 1', 'not a decimal'),
    ('1e9', 'not a decimal'),
    ('1.2.3', 'not a decimal'),
    ('1_000', 'not a decimal'),
    ('1' * 40, 'too long'),
    ('10000000000', 'too large'),
    ('9999999999.999996', 'too large'),
    ('9' * 31, 'too large'),
    (1e300, 'too large'),
    (None, 'must be a str'),
    (True, 'must be a str'),
    ([1], 'must be a str'),
])
def test_invalid_input_is_a_clear_value_error(value, message):
    with pytest.raises(ValueError, match=message):
        Timestamp(value)
