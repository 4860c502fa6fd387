"""Configuration (the README's table): defaults, duration formats, precedence, one-line
errors."""

# The expected messages spell the rule with a multiplication sign, as users read it.
# ruff: noqa: RUF001

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from session_operator.config import (
    FILE_KEYS,
    ConfigError,
    Settings,
    env_name,
    format_duration,
    load_settings,
    parse_duration,
    settings_help,
)

pytestmark = pytest.mark.unit

DURATION_SETTINGS = [
    ("lease_ttl", "XG2G_SESSION_LEASE_TTL", "leaseTTL"),
    ("heartbeat_interval", "XG2G_SESSION_HEARTBEAT_INTERVAL", "heartbeatInterval"),
    ("expiry_check_interval", "XG2G_SESSION_EXPIRY_CHECK_INTERVAL", "expiryCheckInterval"),
    ("stop_timeout", "XG2G_SESSION_STOP_TIMEOUT", "stopTimeout"),
    ("retention", "XG2G_SESSION_RETENTION", "retention"),
    ("auth_cache_ttl", "XG2G_SESSION_AUTH_CACHE_TTL", "authCacheTTL"),
    ("start_timeout", "XG2G_SESSION_START_TIMEOUT", "startTimeout"),
]
# Durations that may be unset (empty): no maximum lifetime, no bound.
OPTIONAL_DURATION_SETTINGS = [
    ("max_lifetime", "XG2G_SESSION_MAX_LIFETIME", "maxLifetime"),
    ("max_lifetime_bound", "XG2G_SESSION_MAX_LIFETIME_BOUND", "maxLifetimeBound"),
    ("start_timeout_bound", "XG2G_SESSION_START_TIMEOUT_BOUND", "startTimeoutBound"),
]
DURATION_HINT = "must be a positive duration like 60s, 2m, 1h30m"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without XG2G_SESSION_* variables from the outer environment."""
    for name in list(os.environ):
        if name.upper().startswith("XG2G_SESSION_"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: Path | None, **overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, **overrides)
    return caught.value


# --- defaults ------------------------------------------------------------------------------


def test_defaults_are_the_spec_table() -> None:
    settings = load_settings()
    assert settings.lease_ttl == timedelta(seconds=60)
    assert settings.heartbeat_interval == timedelta(seconds=5)
    assert settings.expiry_check_interval == timedelta(seconds=10)
    assert settings.stop_timeout == timedelta(seconds=60)
    assert settings.retention == timedelta(hours=24)


def test_defaults_of_the_other_settings() -> None:
    settings = load_settings()
    assert settings.namespace is None
    assert settings.api_host == "0.0.0.0"
    assert settings.api_port == 8080
    assert settings.tls_cert_file is None
    assert settings.tls_key_file is None
    assert settings.token_audiences == ["session-lease-operator"]
    # The kube-apiserver's own default for its token webhook cache.
    assert settings.auth_cache_ttl == timedelta(minutes=3)
    assert settings.api_max_connections == 4096
    assert settings.log_level == "INFO"
    assert settings.log_format == "json"


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(pydantic.ValidationError):
        settings.lease_ttl = timedelta(seconds=1)  # type: ignore[misc]


def test_every_setting_has_a_file_key() -> None:
    assert set(FILE_KEYS) == set(Settings.model_fields)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60, timedelta(seconds=60)),
        (1.5, timedelta(seconds=1.5)),
        ("60", timedelta(seconds=60)),
        ("2.5", timedelta(seconds=2.5)),
        ("60s", timedelta(seconds=60)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("1.5s", timedelta(milliseconds=1500)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m500ms", timedelta(minutes=1, milliseconds=500)),
        ("0.001s", timedelta(milliseconds=1)),
        (" 10s ", timedelta(seconds=10)),
        ("0s", timedelta(0)),
        (timedelta(seconds=7), timedelta(seconds=7)),
    ],
)
def test_parse_duration_accepts(value: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "   ", "abc", "s", "5x", "5 s", "1h30", "-5s", "+5s", "1.2.3s", "1e3", "5M", "nan"],
)
def test_parse_duration_rejects_text(value: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 60s, 2m, 1h30m"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, float("nan"), float("inf")])
def test_parse_duration_rejects_non_durations(value: float) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


def test_parse_duration_rejects_overflow_readably() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999999h")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (timedelta(hours=24), "24h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=60), "1m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(minutes=1, milliseconds=500), "1m500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(days=2), "48h"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_uses_the_largest_whole_units_parse_duration_reads_back(
    value: timedelta, shown: str
) -> None:
    assert format_duration(value) == shown
    assert parse_duration(shown) == value


@pytest.mark.parametrize(("field", "env", "_key"), DURATION_SETTINGS)
def test_duration_setting_reads_units_from_environment(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, _key: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "24h")  # room for a long heartbeat interval
    # The auth cache is capped at ten minutes; the others take hours.
    value, expected = (
        ("1m", timedelta(minutes=1))
        if field == "auth_cache_ttl"
        else ("1h30m", timedelta(hours=1, minutes=30))
    )
    monkeypatch.setenv(env, value)
    assert getattr(load_settings(), field) == expected


@pytest.mark.parametrize(("field", "env", "_key"), DURATION_SETTINGS)
@pytest.mark.parametrize("bad", ["0", "0s", "0ms", "-1s", "-5", "soon", ""])
def test_invalid_duration_in_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, _key: str, bad: str
) -> None:
    monkeypatch.setenv(env, bad)
    error = config_error()
    assert error.problems == (f"{env}: {DURATION_HINT} (got {bad!r})",)


@pytest.mark.parametrize(("field", "_env", "key"), DURATION_SETTINGS)
@pytest.mark.parametrize("bad", ["0", "-3", "'2 minutes'"])
def test_invalid_duration_in_file_names_the_key(
    tmp_path: Path, field: str, _env: str, key: str, bad: str
) -> None:
    path = write_config(tmp_path, f"{key}: {bad}\n")
    error = config_error(path)
    raw = {"0": 0, "-3": -3, "'2 minutes'": "2 minutes"}[bad]
    assert error.problems == (f"{key}: {DURATION_HINT} (got {raw!r})",)


@pytest.mark.parametrize(("field", "_env", "_key"), DURATION_SETTINGS)
def test_invalid_duration_override_names_the_flag(field: str, _env: str, _key: str) -> None:
    error = config_error(**{field: "0s"})
    flag = "--" + field.replace("_", "-")
    assert error.problems == (f"{flag}: {DURATION_HINT} (got '0s')",)


def test_zero_timedelta_is_invalid() -> None:
    error = config_error(stop_timeout=timedelta(0))
    assert error.problems == (f"--stop-timeout: {DURATION_HINT} (got datetime.timedelta(0))",)


# --- lease TTL against heartbeat interval --------------------------------------------------


def test_ttl_below_three_intervals_names_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_HEARTBEAT_INTERVAL", "30s")
    error = config_error()
    assert str(error) == (
        "XG2G_SESSION_LEASE_TTL (1m) must be at least 3 × XG2G_SESSION_HEARTBEAT_INTERVAL (30s)"
    )


def test_ttl_of_exactly_three_intervals_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "15s")
    monkeypatch.setenv("XG2G_SESSION_HEARTBEAT_INTERVAL", "5s")
    settings = load_settings()
    assert settings.lease_ttl == 3 * settings.heartbeat_interval


def test_ttl_one_millisecond_below_three_intervals_is_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "14999ms")
    error = config_error()
    assert error.problems == (
        "XG2G_SESSION_LEASE_TTL (14999ms) must be at least 3 × XG2G_SESSION_HEARTBEAT_INTERVAL"
        " (5s)",
    )


def test_ttl_rule_names_file_keys_as_written(tmp_path: Path) -> None:
    path = write_config(tmp_path, "leaseTTL: 10\nheartbeatInterval: 1m\n")
    error = config_error(path)
    assert error.problems == ("leaseTTL (10s) must be at least 3 × heartbeatInterval (1m)",)


def test_ttl_rule_names_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_HEARTBEAT_INTERVAL", "10s")
    error = config_error(lease_ttl=timedelta(seconds=20))
    assert error.problems == (
        "--lease-ttl (20s) must be at least 3 × XG2G_SESSION_HEARTBEAT_INTERVAL (10s)",
    )


def test_ttl_rule_holds_for_direct_construction() -> None:
    with pytest.raises(pydantic.ValidationError, match="must be at least 3"):
        Settings(lease_ttl=timedelta(seconds=10), heartbeat_interval=timedelta(seconds=5))


# --- maximum lifetime and start timeout, with their bounds ----------------------------------


def test_sessions_have_no_maximum_lifetime_and_ten_minutes_to_start_by_default() -> None:
    settings = load_settings()
    assert settings.max_lifetime is None
    assert settings.max_lifetime_bound is None
    assert settings.start_timeout == timedelta(minutes=10)
    assert settings.start_timeout_bound is None


def test_a_hold_reaches_eight_hours_ahead_by_default() -> None:
    assert load_settings().max_hold == timedelta(hours=8)


@pytest.mark.parametrize(
    ("value", "expected"), [("0", timedelta(0)), ("30m", timedelta(minutes=30))]
)
def test_max_hold_reads_durations_and_zero_turns_holds_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, expected: timedelta
) -> None:
    monkeypatch.setenv("XG2G_SESSION_MAX_HOLD", value)
    assert load_settings().max_hold == expected
    monkeypatch.delenv("XG2G_SESSION_MAX_HOLD")
    assert load_settings(write_config(tmp_path, f"maxHold: {value}\n")).max_hold == expected


@pytest.mark.parametrize("value", ["-1h", "soon"])
def test_a_max_hold_that_is_no_duration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_MAX_HOLD", value)
    (line,) = config_error().problems
    assert line.startswith("XG2G_SESSION_MAX_HOLD: must be a duration like")
    assert line.endswith(f"(got {value!r})")


@pytest.mark.parametrize(("field", "env", "_key"), OPTIONAL_DURATION_SETTINGS)
def test_optional_duration_reads_units_from_environment(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, _key: str
) -> None:
    monkeypatch.setenv(env, "1h30m")
    assert getattr(load_settings(), field) == timedelta(hours=1, minutes=30)


@pytest.mark.parametrize(("field", "env", "_key"), OPTIONAL_DURATION_SETTINGS)
@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_optional_duration_is_unset(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, _key: str, empty: str
) -> None:
    monkeypatch.setenv(env, empty)
    assert getattr(load_settings(), field) is None


@pytest.mark.parametrize(("field", "env", "_key"), OPTIONAL_DURATION_SETTINGS)
@pytest.mark.parametrize("bad", ["0", "0s", "-1s", "forever"])
def test_invalid_optional_duration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, _key: str, bad: str
) -> None:
    monkeypatch.setenv(env, bad)
    assert config_error().problems == (f"{env}: {DURATION_HINT} (got {bad!r})",)


@pytest.mark.parametrize(("field", "_env", "key"), OPTIONAL_DURATION_SETTINGS)
def test_invalid_optional_duration_in_file_names_the_key(
    tmp_path: Path, field: str, _env: str, key: str
) -> None:
    error = config_error(write_config(tmp_path, f"{key}: 0\n"))
    assert error.problems == (f"{key}: {DURATION_HINT} (got 0)",)


def test_max_lifetime_below_the_lease_ttl_names_both_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XG2G_SESSION_MAX_LIFETIME", "59s")
    assert config_error().problems == (
        "XG2G_SESSION_LEASE_TTL (1m) must be at most XG2G_SESSION_MAX_LIFETIME (59s): a lifetime"
        " shorter than one lease leaves heartbeats nothing to extend",
    )


def test_max_lifetime_of_exactly_one_lease_ttl_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_MAX_LIFETIME", "60s")
    assert load_settings().max_lifetime == timedelta(seconds=60)


def test_lifetime_bound_below_the_lease_ttl_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_MAX_LIFETIME_BOUND", "30s")
    (problem,) = config_error().problems
    assert problem.startswith(
        "XG2G_SESSION_LEASE_TTL (1m) must be at most XG2G_SESSION_MAX_LIFETIME_BOUND (30s)"
    )


def test_max_lifetime_above_its_bound_names_both_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, "maxLifetime: 2h\nmaxLifetimeBound: 1h\n")
    assert config_error(path).problems == (
        "maxLifetime (2h) must be at most maxLifetimeBound (1h): the default lifetime must be"
        " within the bound",
    )


def test_max_lifetime_equal_to_its_bound_is_valid(tmp_path: Path) -> None:
    path = write_config(tmp_path, "maxLifetime: 1h\nmaxLifetimeBound: 60m\n")
    settings = load_settings(path)
    assert settings.max_lifetime == settings.max_lifetime_bound == timedelta(hours=1)


def test_default_start_timeout_above_its_bound_names_both_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XG2G_SESSION_START_TIMEOUT_BOUND", "5m")
    assert config_error().problems == (
        "XG2G_SESSION_START_TIMEOUT (10m) must be at most XG2G_SESSION_START_TIMEOUT_BOUND (5m):"
        " the default start timeout must be within the bound",
    )


def test_start_timeout_within_its_bound_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_START_TIMEOUT", "2m")
    monkeypatch.setenv("XG2G_SESSION_START_TIMEOUT_BOUND", "5m")
    settings = load_settings()
    assert (settings.start_timeout, settings.start_timeout_bound) == (
        timedelta(minutes=2),
        timedelta(minutes=5),
    )


def test_bound_rules_hold_for_direct_construction() -> None:
    with pytest.raises(pydantic.ValidationError, match="must be at most"):
        Settings(max_lifetime=timedelta(hours=2), max_lifetime_bound=timedelta(hours=1))


# --- expiry warning ------------------------------------------------------------------------

EXPIRY_WARNING_HINT = "must be a duration like 30s, 2m or 1h30m, or 0 to turn it off"


def test_the_expiry_warning_is_off_by_default() -> None:
    assert load_settings().expiry_warning == timedelta(0)
    assert shown_default("expiry_warning") == "0s"


@pytest.mark.parametrize(
    ("raw", "window"),
    [("30s", timedelta(seconds=30)), ("1m30s", timedelta(seconds=90)), ("0", timedelta(0))],
)
def test_the_expiry_warning_reads_a_duration_or_zero(
    monkeypatch: pytest.MonkeyPatch, raw: str, window: timedelta
) -> None:
    monkeypatch.setenv("XG2G_SESSION_EXPIRY_WARNING", raw)
    assert load_settings().expiry_warning == window


@pytest.mark.parametrize("bad", ["-1s", "soon", ""])
def test_an_invalid_expiry_warning_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_EXPIRY_WARNING", bad)
    assert config_error().problems == (
        f"XG2G_SESSION_EXPIRY_WARNING: {EXPIRY_WARNING_HINT} (got {bad!r})",
    )


def test_an_invalid_expiry_warning_in_the_file_names_the_key(tmp_path: Path) -> None:
    error = config_error(write_config(tmp_path, "expiryWarning: -5\n"))
    assert error.problems == (f"expiryWarning: {EXPIRY_WARNING_HINT} (got -5)",)


# --- TLS files -----------------------------------------------------------------------------


def test_tls_files_given_together_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_TLS_CERT_FILE", "/tls/tls.crt")
    monkeypatch.setenv("XG2G_SESSION_TLS_KEY_FILE", "/tls/tls.key")
    settings = load_settings()
    assert settings.tls_cert_file == Path("/tls/tls.crt")
    assert settings.tls_key_file == Path("/tls/tls.key")


def test_tls_certificate_without_key_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_TLS_CERT_FILE", "/tls/tls.crt")
    error = config_error()
    assert error.problems == (
        "XG2G_SESSION_TLS_CERT_FILE and XG2G_SESSION_TLS_KEY_FILE must be given together",
    )


def test_tls_key_without_certificate_is_invalid(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tlsKeyFile: /tls/tls.key\n")
    error = config_error(path)
    assert error.problems == ("XG2G_SESSION_TLS_CERT_FILE and tlsKeyFile must be given together",)


def test_empty_tls_variables_mean_no_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_TLS_CERT_FILE", "")
    monkeypatch.setenv("XG2G_SESSION_TLS_KEY_FILE", "")
    settings = load_settings()
    assert settings.tls_cert_file is None
    assert settings.tls_key_file is None


def test_both_cross_field_problems_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "10s")
    monkeypatch.setenv("XG2G_SESSION_TLS_KEY_FILE", "/tls/tls.key")
    error = config_error()
    assert error.problems == (
        "XG2G_SESSION_LEASE_TTL (10s) must be at least 3 × XG2G_SESSION_HEARTBEAT_INTERVAL (5s)",
        "XG2G_SESSION_TLS_CERT_FILE and XG2G_SESSION_TLS_KEY_FILE must be given together",
    )


# --- other settings ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("8443", 8443), ("65535", 65535)])
def test_api_port_accepts_valid_ports(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_PORT", value)
    assert load_settings().api_port == expected


@pytest.mark.parametrize(
    ("value", "must"),
    [
        ("0", "must be at least 1"),
        ("-1", "must be at least 1"),
        ("65536", "must be at most 65535"),
        ("http", "must be a whole number"),
        ("80.5", "must be a whole number"),
        ("", "must be a whole number"),
    ],
)
def test_api_port_rejects_invalid_ports(
    monkeypatch: pytest.MonkeyPatch, value: str, must: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_PORT", value)
    error = config_error()
    assert error.problems == (f"XG2G_SESSION_API_PORT: {must} (got {value!r})",)


def test_api_host_must_not_be_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_HOST", " ")
    error = config_error()
    assert error.problems == (
        "XG2G_SESSION_API_HOST: must be a host name or IP address to listen on (got ' ')",
    )


@pytest.mark.parametrize(("value", "expected"), [("debug", "DEBUG"), ("Info", "INFO")])
def test_log_level_accepts_level_names_in_any_case(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_LOG_LEVEL", value)
    assert load_settings().log_level == expected


def test_log_level_rejects_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LOG_LEVEL", "verbose")
    error = config_error()
    assert error.problems == (
        "XG2G_SESSION_LOG_LEVEL: must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"
        " (got 'verbose')",
    )


def test_log_format_accepts_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LOG_FORMAT", "TEXT")
    assert load_settings().log_format == "text"


def test_log_format_rejects_other_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LOG_FORMAT", "xml")
    error = config_error()
    assert error.problems == ("XG2G_SESSION_LOG_FORMAT: must be 'json' or 'text' (got 'xml')",)


def test_namespace_limits_the_operator_to_one_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_NAMESPACE", "media")
    assert load_settings().namespace == "media"


def test_empty_namespace_means_all_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_NAMESPACE", "")
    assert load_settings().namespace is None


@pytest.mark.parametrize("value", ["Media", "media_room", "-media", "a" * 64])
def test_namespace_must_be_a_namespace_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("XG2G_SESSION_NAMESPACE", value)
    error = config_error()
    assert len(error.problems) == 1
    assert error.problems[0].startswith("XG2G_SESSION_NAMESPACE: must be a namespace name")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b", ["a", "b"]),
        (" api , https://kubernetes.default.svc ,", ["api", "https://kubernetes.default.svc"]),
    ],
)
def test_token_audiences_are_comma_separated_in_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("XG2G_SESSION_TOKEN_AUDIENCES", value)
    assert load_settings().token_audiences == expected


@pytest.mark.parametrize("value", ["", " , "])
def test_no_token_audience_is_refused_rather_than_taking_any(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_TOKEN_AUDIENCES", value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    [problem] = refused.value.problems
    assert problem.startswith("XG2G_SESSION_TOKEN_AUDIENCES: must name at least one audience")


def test_token_audiences_are_a_list_in_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tokenAudiences: [session-operator, api]\n")
    assert load_settings(path).token_audiences == ["session-operator", "api"]


def test_token_audiences_reject_non_strings(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tokenAudiences: [1, 2]\n")
    error = config_error(path)
    assert error.problems == (
        "tokenAudiences: must be a list of token audiences, in the environment comma separated"
        " (got [1, 2])",
    )


# --- the YAML file and precedence ----------------------------------------------------------


def test_file_accepts_every_spec_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
leaseTTL: 2m
heartbeatInterval: 10s
expiryCheckInterval: 30
stopTimeout: 1m30s
retention: 48h
maxLifetime: 8h
maxLifetimeBound: 24h
startTimeout: 5m
startTimeoutBound: 1h
namespace: media
apiHost: 127.0.0.1
apiPort: 8443
tlsCertFile: /tls/tls.crt
tlsKeyFile: /tls/tls.key
tokenAudiences: [session-operator]
authCacheTTL: 500ms
logLevel: info
logFormat: text
""",
    )
    settings = load_settings(path)
    assert settings == Settings(
        lease_ttl=timedelta(minutes=2),
        heartbeat_interval=timedelta(seconds=10),
        expiry_check_interval=timedelta(seconds=30),
        stop_timeout=timedelta(seconds=90),
        retention=timedelta(hours=48),
        max_lifetime=timedelta(hours=8),
        max_lifetime_bound=timedelta(hours=24),
        start_timeout=timedelta(minutes=5),
        start_timeout_bound=timedelta(hours=1),
        namespace="media",
        api_host="127.0.0.1",
        api_port=8443,
        tls_cert_file=Path("/tls/tls.crt"),
        tls_key_file=Path("/tls/tls.key"),
        token_audiences=["session-operator"],
        auth_cache_ttl=timedelta(milliseconds=500),
        log_level="INFO",
        log_format="text",
    )


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "stopTimeout: 2m\n")
    settings = load_settings(path)
    assert settings.stop_timeout == timedelta(minutes=2)
    assert settings.lease_ttl == timedelta(seconds=60)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "leaseTTL: 2m\nretention: 1h\n")
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "3m")
    settings = load_settings(path)
    assert settings.lease_ttl == timedelta(minutes=3)
    assert settings.retention == timedelta(hours=1)


def test_overrides_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "leaseTTL: 2m\n")
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "3m")
    assert load_settings(path, lease_ttl="4m").lease_ttl == timedelta(minutes=4)


def test_override_of_none_means_flag_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "3m")
    assert load_settings(lease_ttl=None).lease_ttl == timedelta(minutes=3)


def test_invalid_file_value_is_ignored_when_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "leaseTTL: 0\n")
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "90s")
    assert load_settings(path).lease_ttl == timedelta(seconds=90)


def test_environment_value_is_named_even_when_file_has_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "leaseTTL: 90s\n")
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "never")
    error = config_error(path)
    assert error.problems == (f"XG2G_SESSION_LEASE_TTL: {DURATION_HINT} (got 'never')",)


def test_lowercase_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("xg2g_session_retention", "2h")
    assert load_settings().retention == timedelta(hours=2)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, "")) == load_settings()


def test_unknown_file_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write_config(tmp_path, "leaseTtl: 60s\nheartbeatIntervall: 5s\nbogus: 1\n")
    error = config_error(path)
    assert error.problems == (
        f"{path}: unknown setting 'leaseTtl', did you mean 'leaseTTL'?",
        f"{path}: unknown setting 'heartbeatIntervall', did you mean 'heartbeatInterval'?",
        f"{path}: unknown setting 'bogus'",
    )


def test_environment_style_key_in_file_is_unknown(tmp_path: Path) -> None:
    path = write_config(tmp_path, "lease_ttl: 60s\n")
    error = config_error(path)
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{path}: unknown setting 'lease_ttl'")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    error = config_error(path)
    assert error.problems == (f"{path}: cannot read config file: No such file or directory",)


def test_invalid_yaml_is_one_line_with_its_position(tmp_path: Path) -> None:
    path = write_config(tmp_path, "leaseTTL: 60s\n  heartbeatInterval: [5s\n")
    error = config_error(path)
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{path}: not valid YAML at line 2")
    assert "\n" not in str(error)


def test_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = write_config(tmp_path, "- leaseTTL\n- 60s\n")
    error = config_error(path)
    assert error.problems == (f"{path}: must be a mapping of settings like 'leaseTTL: 60s'",)


def test_unknown_override_is_an_error() -> None:
    error = config_error(lease_tll="60s")
    assert error.problems == ("unknown setting --lease-tll",)


# --- the error as a whole ------------------------------------------------------------------


def test_every_bad_setting_gets_exactly_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "apiPort: 0\nlogFormat: xml\n")
    monkeypatch.setenv("XG2G_SESSION_LEASE_TTL", "0s")
    monkeypatch.setenv("XG2G_SESSION_RETENTION", "forever")
    error = config_error(path, log_level="chatty")
    assert sorted(error.problems) == sorted(
        [
            f"XG2G_SESSION_LEASE_TTL: {DURATION_HINT} (got '0s')",
            f"XG2G_SESSION_RETENTION: {DURATION_HINT} (got 'forever')",
            "apiPort: must be at least 1 (got 0)",
            "logFormat: must be 'json' or 'text' (got 'xml')",
            "--log-level: must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL' (got 'chatty')",
        ]
    )
    assert str(error).splitlines() == list(error.problems)


def test_error_carries_no_pydantic_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_PORT", "http")
    error = config_error()
    assert "validation error" not in str(error)
    assert "pydantic" not in str(error)
    assert "[type=" not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_auth_cache_ttl_is_capped_at_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_AUTH_CACHE_TTL", "10m")
    assert load_settings().auth_cache_ttl == timedelta(minutes=10)
    monkeypatch.setenv("XG2G_SESSION_AUTH_CACHE_TTL", "10m1s")
    with pytest.raises(ConfigError) as error:
        load_settings()
    [problem] = error.value.problems
    assert problem == (
        "XG2G_SESSION_AUTH_CACHE_TTL: must be at most 10m: a revoked token or a removed"
        " RoleBinding keeps working that long (got '10m1s')"
    )


@pytest.mark.parametrize(
    ("value", "expected"), [("64", 64), ("4096", 4096), ("65536", 65536), (" 20000 ", 20000)]
)
def test_api_max_connections_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_MAX_CONNECTIONS", value)
    assert load_settings().api_max_connections == expected


def test_api_max_connections_is_read_from_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "apiMaxConnections: 10000\n")
    assert load_settings(path).api_max_connections == 10000


@pytest.mark.parametrize(
    ("value", "must"),
    [
        ("63", "must be at least 64"),
        ("65537", "must be at most 65536"),
        ("many", "must be a whole number"),
    ],
)
def test_api_max_connections_rejects_values_out_of_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str, must: str
) -> None:
    monkeypatch.setenv("XG2G_SESSION_API_MAX_CONNECTIONS", value)
    error = config_error()
    assert error.problems == (f"XG2G_SESSION_API_MAX_CONNECTIONS: {must} (got {value!r})",)


def test_only_the_pod_is_released_by_default() -> None:
    assert load_settings().released_kinds == ("pods",)


def test_released_kinds_add_to_the_pod_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_RELEASED_KINDS", "secrets, services,pods,secrets")
    assert load_settings().released_kinds == ("pods", "secrets", "services")


def test_released_kinds_refuse_other_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XG2G_SESSION_RELEASED_KINDS", "deployments")
    with pytest.raises(ConfigError) as error:
        load_settings()
    [problem] = error.value.problems
    assert problem.startswith("XG2G_SESSION_RELEASED_KINDS: must list kinds among pods, services")


def test_a_misspelled_environment_setting_stops_the_start_and_suggests_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XG2G_SESSION_LEASE_TIME", "30s")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert error.value.problems == (
        "XG2G_SESSION_LEASE_TIME: unknown setting, did you mean XG2G_SESSION_LEASE_TTL?",
    )


def test_an_unknown_environment_setting_far_from_any_name_is_named_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XG2G_SESSION_WHATEVER", "1")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert error.value.problems == ("XG2G_SESSION_WHATEVER: unknown setting",)


# --- help ----------------------------------------------------------------------------------


def shown_default(field: str) -> str:
    """The default column of *field*'s line in the settings help."""
    (line,) = (line for line in settings_help().splitlines() if f" {env_name(field)} " in line)
    return re.split(r"\s{2,}", line.strip())[1]


def test_help_lists_every_setting() -> None:
    for field in Settings.model_fields:
        assert shown_default(field)


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("lease_ttl", "1m"),
        ("heartbeat_interval", "5s"),
        ("retention", "24h"),
        ("auth_cache_ttl", "3m"),
        ("start_timeout", "10m"),
    ],
)
def test_help_shows_durations_in_units(field: str, shown: str) -> None:
    assert shown_default(field) == shown


def test_help_shows_booleans_as_on_or_off_which_the_environment_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert shown_default("leader_election") == "on"
    monkeypatch.setenv(env_name("leader_election"), "off")
    assert load_settings().leader_election is False


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("namespace", "all namespaces"),
        ("metrics_port", "the API port"),
        ("probe_port", "the API port"),
        ("webhook_port", "no webhook"),
        ("tls_cert_file", "plain HTTP"),
        ("max_lifetime", "none"),
        ("max_lifetime_bound", "no bound"),
        ("start_timeout_bound", "no bound"),
    ],
)
def test_help_says_what_an_unset_setting_means(field: str, shown: str) -> None:
    assert Settings.model_fields[field].default is None
    assert shown_default(field) == shown


def test_help_shows_no_python_values() -> None:
    words = set(settings_help().replace(";", " ").replace(",", " ").split())
    assert not words & {"None", "True", "False", "(unset)", "86400s"}
