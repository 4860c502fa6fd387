"""RFC 3339 timestamps as the Session status stores them.

Status fields (``leaseExpiresAt``, ``lastHeartbeat``, ``stoppedAt``) are written in one form
only, UTC with exactly milliseconds and a trailing ``Z``, so that two writers produce the same
string for the same instant and a JSON-patch ``test`` on the field compares like with like.
Reading is lenient about the offset and the fraction, strict about everything else.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"[Tt]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,  # digits 0-9 only
)


def format_timestamp(dt: datetime) -> str:
    """Return ``dt`` as RFC 3339 in UTC with exactly three fractional digits and a ``Z``.

    Sub-millisecond precision is truncated, never rounded, so a formatted instant is never
    later than the real one. A naive datetime raises ``ValueError``: its zone is unknown.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"cannot format a naive datetime as RFC 3339: {dt.isoformat()}")
    utc = dt.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware datetime in UTC.

    Accepts ``Z`` (either case) or a ``±HH:MM`` offset, with or without fractional seconds
    (digits beyond microseconds are truncated). Anything else, including a missing offset,
    raises ``ValueError`` naming the text.
    """
    if isinstance(text, str) and _canonical(text):
        # The two forms the apiserver and the operator write, read without the pattern:
        # every replica reads one per Session at a start.
        with contextlib.suppress(ValueError):  # out of range: the error below names it
            return datetime.fromisoformat(text)
    match = _RFC3339.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp like 2026-11-23T10:00:05.123Z: {text!r}")
    fields = match.groupdict()
    offset = fields["offset"]
    if offset in ("Z", "z"):
        zone = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"RFC 3339 timestamp has an invalid offset: {text!r}")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    fraction = fields["fraction"] or ""
    microsecond = int(fraction[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(fields["year"]),
            int(fields["month"]),
            int(fields["day"]),
            int(fields["hour"]),
            int(fields["minute"]),
            int(fields["second"]),
            microsecond,
            tzinfo=zone,
        ).astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"RFC 3339 timestamp out of range ({error}): {text!r}") from None
    return parsed


def _canonical(text: str) -> bool:
    """Whether *text* has the shape ``YYYY-MM-DDTHH:MM:SSZ`` or ``YYYY-MM-DDTHH:MM:SS.mmmZ``
    (ASCII; its digits are left to ``datetime.fromisoformat``)."""
    return (
        (len(text) == 20 or (len(text) == 24 and text[19] == "."))
        and text[-1] == "Z"
        and text[4] == text[7] == "-"
        and text[10] == "T"
        and text[13] == text[16] == ":"
        and text.isascii()
    )


def instant_or_none(value: object) -> datetime | None:
    """The instant of an RFC 3339 text (:func:`parse_timestamp`); ``None`` when *value* is
    absent or not a timestamp: for fields others write, where one bad value must not make
    the whole object unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def format_time(dt: datetime) -> str:
    """Format an aware datetime as a Kubernetes ``metav1.Time`` (a Condition's
    ``lastTransitionTime``): RFC 3339, UTC, whole seconds."""
    if dt.tzinfo is None:
        raise ValueError("a metav1.Time needs an aware datetime")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(dt: datetime) -> str:
    """Format an aware datetime as a Kubernetes MicroTime: RFC 3339, UTC, microseconds."""
    if dt.tzinfo is None:
        raise ValueError("a MicroTime needs an aware datetime")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
