"""Markers: everything under tests/unit is `unit`, everything under tests/e2e is `e2e`."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder so `-m unit` / `-m e2e` select them."""
    for item in items:
        path = Path(str(item.fspath))
        if (TESTS / "unit") in path.parents:
            item.add_marker(pytest.mark.unit)
        elif (TESTS / "e2e") in path.parents:
            item.add_marker(pytest.mark.e2e)
