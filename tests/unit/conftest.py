import pytest

from tests.unit import fakes


@pytest.fixture
def clock():
    return fakes.Clock()
