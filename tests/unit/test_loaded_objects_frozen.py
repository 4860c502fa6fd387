"""Before it serves, the operator keeps what it loaded out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from session_operator.__main__ import freeze_loaded_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_what_is_loaded_is_frozen_and_what_comes_later_is_not() -> None:
    assert gc.get_freeze_count() == 0
    freeze_loaded_objects()
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the operator's modules and classes, at least
    later = [[index] for index in range(1000)]
    assert gc.get_freeze_count() == frozen
    assert gc.is_tracked(later[0])
