"""``make help`` lists every target in two columns, each description where the column starts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_description_starts_in_the_same_column() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    rows = result.stdout.splitlines()
    targets = re.findall(r"^([a-z0-9-]+):.*## ", (REPO / "Makefile").read_text(), re.M)
    assert [row.split()[1] for row in rows] == targets
    starts = set()
    for row in rows:
        name_column = re.match(r"  make \S+ +", row)
        assert name_column, row
        starts.add(name_column.end())
    assert len(starts) == 1, rows
    longest = max(len(target) for target in targets)
    assert starts == {len("  make ") + longest + 2}
