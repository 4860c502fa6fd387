"""Durations as kubectl prints ages: ``42s``, ``3m10s``, ``2h5m``, ``6d23h``."""

from __future__ import annotations

from datetime import timedelta

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_YEAR = 365 * _DAY


def human_duration(delta: timedelta) -> str:
    """*delta* the way kubectl's ``HumanDuration`` writes it (apimachinery's
    ``util/duration``): whole seconds up to 2 minutes, then two units while the second one
    still matters, then one. Fractions are cut, never rounded up, so a lease is never shown
    longer than it is; a negative *delta* is ``0s``."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 2 * _MINUTE:
        return f"{seconds}s"
    minutes = seconds // _MINUTE
    if minutes < 10:
        return _two_units(minutes, "m", seconds % _MINUTE, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = seconds // _HOUR
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = seconds // _DAY
    if days < 8:
        return _two_units(days, "d", hours % 24, "h")
    if days < 2 * 365:
        return f"{days}d"
    years = seconds // _YEAR
    if years < 8:
        return _two_units(years, "y", days % 365, "d")
    return f"{years}y"


def _two_units(large: int, large_unit: str, small: int, small_unit: str) -> str:
    return f"{large}{large_unit}{small}{small_unit}" if small else f"{large}{large_unit}"
