"""Status timestamps: RFC 3339, UTC, exactly milliseconds, trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from session_operator.timestamps import format_timestamp, parse_timestamp

pytestmark = pytest.mark.unit


def test_format_writes_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-23T10:00:05.123Z"


def test_format_always_writes_three_fractional_digits() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.000Z"
    )
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.007Z"
    )


def test_format_truncates_sub_millisecond_precision() -> None:
    moment = datetime(2026, 11, 23, 10, 0, 5, 123999, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-23T10:00:05.123Z"


def test_format_converts_other_offsets_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 11, 23, 0, 30, 0, 1000, tzinfo=plus_two)
    assert format_timestamp(moment) == "2026-11-22T22:30:00.001Z"


def test_format_pads_small_years() -> None:
    assert format_timestamp(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000Z"


def test_format_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2026, 11, 23, 10, 0, 5))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:05.123Z", datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)),
        ("2026-11-23t10:00:05.123z", datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)),
        ("2026-11-23T10:00:05Z", datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)),
        ("2026-11-23T10:00:05.5Z", datetime(2026, 11, 23, 10, 0, 5, 500000, tzinfo=UTC)),
        ("2026-11-23T10:00:05.123456789Z", datetime(2026, 11, 23, 10, 0, 5, 123456, tzinfo=UTC)),
        ("2026-11-23T12:00:05.123+02:00", datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)),
        ("2026-11-23T05:30:05-04:30", datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)),
        ("2026-11-23T10:00:05+00:00", datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)),
    ],
)
def test_parse_accepts_rfc3339_forms(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-11-23",
        "2026-11-23T10:00:05",
        "2026-11-23T10:00:05.123",
        "2026-11-23 10:00:05Z",
        "2026-11-23T10:00Z",
        "2026-11-23T10:00:05.Z",
        "2026-11-23T10:00:05+0200",
        "2026-13-23T10:00:05Z",
        "2026-02-30T10:00:05Z",
        "2026-11-23T24:00:05Z",
        "2026-11-23T10:00:05+24:00",
        "20261123T100005Z",
        "2026-11-23T10:00:05,123Z",
        "2026-W48-1T10:00:05Z",
        "2026-11-23T10:00:0\u0665Z",
        "2026-11-23T10:00:60.000Z",
    ],
)
def test_parse_rejects_anything_else_with_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp(text)


def test_parse_error_names_the_text() -> None:
    with pytest.raises(ValueError, match="'not-a-time'"):
        parse_timestamp("not-a-time")


def test_format_and_parse_round_trip() -> None:
    text = "2026-11-23T10:00:05.123Z"
    assert format_timestamp(parse_timestamp(text)) == text
