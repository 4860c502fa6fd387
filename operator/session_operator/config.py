"""Every setting of the operator, its default and its validation (README, Configuration).

Defaults live here and nowhere else: the control loop and the HTTP server receive a
:class:`Settings`. Values come from, highest precedence first, command-line flags (passed to
:func:`load_settings` as keyword overrides), ``XG2G_SESSION_*`` environment variables, a YAML
file with the camelCase keys of the README's configuration table, and the defaults below.

An invalid configuration stops the operator at start: :func:`load_settings` raises
:class:`ConfigError` with one line per bad setting, naming it as the user wrote it
(``XG2G_SESSION_LEASE_TTL``, ``leaseTTL`` or ``--lease-ttl``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "XG2G_SESSION_"
# The audience heartbeat tokens are minted for: a token for it is no credential at the
# apiserver, and an apiserver token is no heartbeat token.
DEFAULT_TOKEN_AUDIENCE = "session-lease-operator"

_DURATION_HINT = "must be a positive duration like 60s, 2m, 1h30m"
_INCONSISTENT = "inconsistent_settings"
_TTL_BELOW_MINIMUM = "lease_ttl_below_minimum"
_TLS_UNPAIRED = "tls_files_unpaired"
_WEBHOOK_WITHOUT_TLS = "webhook_without_tls"
_ABOVE = "above"
_MIN_HEARTBEATS_PER_TTL = 3
_TIMES = "\N{MULTIPLICATION SIGN}"

_SECONDS_PER_UNIT = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_SECONDS = re.compile(_NUMBER)
# `ms` is listed before `m` so that "500ms" is not read as 500 minutes and a stray "s".
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s))+")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` holds one readable line per bad setting."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a duration: a number of seconds, or units ``ms``, ``s``, ``m``, ``h`` in sequence.

    ``60``, ``"60"``, ``"60s"``, ``"2m"``, ``"1h30m"``, ``"1.5s"`` and ``"500ms"`` are
    accepted; a ``timedelta`` is returned as is. Precision is one microsecond. Anything else
    raises ``ValueError`` naming the value. Whether zero or a negative value makes sense is
    the caller's decision.
    """
    if isinstance(value, timedelta):
        return value
    seconds: Decimal
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a duration: {value!r}") from None
        if not seconds.is_finite():
            raise ValueError(f"not a duration: {value!r}")
    elif isinstance(value, str):
        text = value.strip()
        if _BARE_SECONDS.fullmatch(text):
            seconds = Decimal(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(
                (
                    Decimal(number) * _SECONDS_PER_UNIT[unit]
                    for number, unit in _DURATION_PART.findall(text)
                ),
                Decimal(0),
            )
        else:
            raise ValueError(
                f"not a duration like 60s, 2m, 1h30m, 500ms or a number of seconds: {value!r}"
            )
    else:
        raise ValueError(f"not a duration: {value!r}")
    try:
        return timedelta(microseconds=int(seconds.scaleb(6)))
    except OverflowError:
        raise ValueError(f"duration too large: {value!r}") from None


# The units a duration is written in, largest first, each in microseconds.
_UNIT_MICROSECONDS = (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000))


def format_duration(value: timedelta) -> str:
    """Render a non-negative duration in the largest whole units, as :func:`parse_duration`
    reads it back: ``24h``, ``1h30m``, ``1m``, ``1m500ms``; ``0s`` for none. A part below a
    millisecond is a fraction of the last one (``1.5ms``)."""
    rest = value // timedelta(microseconds=1)
    parts: list[str] = []
    for unit, size in _UNIT_MICROSECONDS:
        count, rest = divmod(rest, size)
        if unit == "ms" and rest:
            parts.append(f"{Decimal(count * size + rest).scaleb(-3).normalize():f}ms")
        elif count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _positive_duration(value: Any) -> timedelta:
    try:
        duration = parse_duration(value)
    except ValueError:
        duration = timedelta(0)
    if duration <= timedelta(0):
        raise PydanticCustomError("duration", _DURATION_HINT)
    return duration


def _optional_positive_duration(value: Any) -> timedelta | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _positive_duration(value)


def _duration_or_off(value: Any) -> timedelta:
    try:
        duration = parse_duration(value)
    except ValueError:
        duration = timedelta(-1)
    if duration < timedelta(0):
        raise PydanticCustomError(
            "duration_or_off", "must be a duration like 30s, 2m or 1h30m, or 0 to turn it off"
        )
    return duration


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _host(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PydanticCustomError("host", "must be a host name or IP address to listen on")


def _namespace(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip()
        if not name:
            return None
        if _NAMESPACE.fullmatch(name):
            return name
    raise PydanticCustomError(
        "namespace",
        "must be a namespace name (lowercase letters, digits and '-', at most 63 characters),"
        " or empty for all namespaces",
    )


def _optional_path(value: Any) -> Path | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value.strip())
    raise PydanticCustomError("path", "must be a file path")


def _audiences(value: Any) -> list[str]:
    items: list[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [None]
    if not all(isinstance(item, str) for item in items):
        raise PydanticCustomError(
            "audiences", "must be a list of token audiences, in the environment comma separated"
        )
    audiences = [item.strip() for item in items if item.strip()]
    if not audiences:
        # Empty would turn the audience check off and take the apiserver's own tokens.
        raise PydanticCustomError(
            "audiences",
            "must name at least one audience (session-lease-operator, the default); to take"
            " tokens for the apiserver's own audience, name it (https://kubernetes.default.svc)",
        )
    return audiences


# What a stop may release besides the workload Pod (each needs list and delete on that
# kind, granted by the chart only when listed). Garbage collection deletes the rest of what
# a Session owns when the Session itself is deleted.
RELEASABLE_KINDS = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims")


def _released_kinds(value: Any) -> tuple[str, ...]:
    kinds = _audiences(value) if value is not None else []
    unknown = [kind for kind in kinds if kind not in RELEASABLE_KINDS]
    if unknown:
        raise PydanticCustomError(
            "released_kinds",
            "must list kinds among {kinds}, in the environment comma separated",
            {"kinds": ", ".join(RELEASABLE_KINDS)},
        )
    # The workload Pod is always released, and first.
    return ("pods", *dict.fromkeys(kind for kind in kinds if kind != "pods"))


def _lease_namespace(value: Any) -> str:
    if isinstance(value, str) and _NAMESPACE.fullmatch(value.strip()):
        return value.strip()
    raise PydanticCustomError(
        "namespace",
        "must be a namespace name (lowercase letters, digits and '-', at most 63 characters)",
    )


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


PortNumber = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port to listen on."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

Duration = Annotated[timedelta, BeforeValidator(_positive_duration)]
"""A positive duration setting, parsed by :func:`parse_duration`."""

OptionalDuration = Annotated[timedelta | None, BeforeValidator(_optional_positive_duration)]
"""A positive duration setting that may be unset (empty)."""

# Settings that must not exceed another, each with why: (smaller, larger, why).
_AT_MOST: tuple[tuple[str, str, str], ...] = (
    (
        "lease_ttl",
        "max_lifetime",
        "a lifetime shorter than one lease leaves heartbeats nothing to extend",
    ),
    (
        "lease_ttl",
        "max_lifetime_bound",
        "a lifetime shorter than one lease leaves heartbeats nothing to extend",
    ),
    ("max_lifetime", "max_lifetime_bound", "the default lifetime must be within the bound"),
    ("start_timeout", "start_timeout_bound", "the default start timeout must be within the bound"),
)

# etcd's default limit on one stored object (its request size).
MAX_STORED_OBJECT_BYTES = 1536 * 1024

# A revoked token or a removed RoleBinding keeps working for at most this long.
MAX_AUTH_CACHE_TTL = timedelta(minutes=10)


def _auth_cache_ttl(value: Any) -> timedelta:
    duration = _positive_duration(value)
    if duration > MAX_AUTH_CACHE_TTL:
        raise PydanticCustomError(
            "auth_cache_ttl",
            "must be at most 10m: a revoked token or a removed RoleBinding keeps working that long",
        )
    return duration


class Settings(BaseSettings):
    """The operator's configuration. Defaults are defined here only."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="forbid", frozen=True
    )

    lease_ttl: Duration = Field(
        default=timedelta(seconds=60),
        description="Lease length granted by each accepted heartbeat, for new sessions.",
    )
    heartbeat_interval: Duration = Field(
        default=timedelta(seconds=5),
        description="How often clients should beat; also the idempotency window.",
    )
    expiry_check_interval: Duration = Field(
        default=timedelta(seconds=10),
        description="Period of the backstop sweep that expires lapsed sessions (by state).",
    )
    stop_timeout: Duration = Field(
        default=timedelta(seconds=60),
        description="How long a stop may take before it is forced to its terminal state.",
    )
    retention: Duration = Field(
        default=timedelta(hours=24),
        description="How long terminal sessions are kept before they are deleted.",
    )
    # Off by default: a warning is one more status write and one more Event for every
    # lease that runs out (docs/benchmarks.md budgets the writes per expiry), worth it
    # where someone acts on it, and the window that helps depends on the TTLs the sessions
    # use (docs/lease-rules.md, Expiry warning). 30s suits the default 60s/5s lease.
    expiry_warning: Annotated[timedelta, BeforeValidator(_duration_or_off)] = Field(
        default=timedelta(0),
        description=(
            "How long before a live session's lease ends (leaseExpiresAt; the end of its"
            " maximum lifetime too) its LeaseValid condition says ExpiringSoon, with one"
            " LeaseExpiringSoon Event. 0, the default: off (each warning costs a status"
            " write and an Event)."
        ),
    )
    max_lifetime: OptionalDuration = Field(
        default=None,
        description=(
            "Maximum lifetime of a new session without spec.lease.maxLifetimeSeconds: no"
            " heartbeat extends its lease past creation plus this. Unset: none."
        ),
    )
    max_lifetime_bound: OptionalDuration = Field(
        default=None,
        description=(
            "The longest any new session lives: a longer spec.lease.maxLifetimeSeconds is cut"
            " to it, and a session with no maximum lifetime gets it. Unset: no bound."
        ),
    )
    # Kubernetes' own default for a Deployment that makes no progress
    # (progressDeadlineSeconds: 600): room for a large image on a cold node and a few
    # minutes of scheduling, short enough that a Pod nothing can schedule is released.
    start_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description=(
            "How long a new session with a workload may take from creation to ready before it"
            " fails (StartTimeout), unless its spec.startTimeoutSeconds says otherwise."
        ),
    )
    start_timeout_bound: OptionalDuration = Field(
        default=None,
        description=(
            "The longest start timeout a session may ask for: a longer"
            " spec.startTimeoutSeconds is cut to it. Unset: no bound but the CRD's (24h)."
        ),
    )
    # A working day: long enough to hold a session over a meeting, lunch or an afternoon
    # away from the keyboard, short enough that a forgotten hold does not keep a session's
    # resources overnight. Users who need more ask their admin; 0 turns holds off.
    max_hold: Annotated[timedelta, BeforeValidator(_duration_or_off)] = Field(
        default=timedelta(hours=8),
        description=(
            "How far ahead spec.hold.until may be: the admission webhook refuses a hold"
            " further than now plus this, and the operator never holds a session longer"
            " than this from when it takes a hold up. 0: every hold is refused."
        ),
    )
    namespace: Annotated[str | None, BeforeValidator(_namespace)] = Field(
        default=None, description="Namespace to watch; unset watches all namespaces."
    )
    api_host: Annotated[str, BeforeValidator(_host)] = Field(
        default="0.0.0.0", description="Address the heartbeat API listens on."
    )
    api_port: PortNumber = Field(default=8080, description="Port the heartbeat API listens on.")
    api_max_connections: int = Field(
        default=4096,
        ge=64,
        le=65536,
        description=(
            "Connections the API port holds at once (keep-alive clients hold one each); an"
            " idle TLS connection costs about 42 KiB, so 4096 take up to about 170 MiB."
        ),
    )
    metrics_port: Annotated[PortNumber | None, BeforeValidator(_blank_is_none)] = Field(
        default=None,
        description=(
            "Port of a plain-HTTP listener serving only /metrics; unset: /metrics is served on"
            " the API port."
        ),
    )
    probe_port: Annotated[PortNumber | None, BeforeValidator(_blank_is_none)] = Field(
        default=None,
        description=(
            "Port of a plain-HTTP listener serving only /healthz and /readyz, for the kubelet's"
            " probes: heartbeat callers cannot crowd it out. They stay on the API port too."
        ),
    )
    webhook_port: Annotated[PortNumber | None, BeforeValidator(_blank_is_none)] = Field(
        default=None,
        description=(
            "Port of the admission webhook (POST /admission/sessions), over TLS with the API's"
            " certificate; unset: no webhook is served. Never on the API port."
        ),
    )
    tls_cert_file: Annotated[Path | None, BeforeValidator(_optional_path)] = Field(
        default=None, description="PEM certificate of the heartbeat API; with tls_key_file."
    )
    tls_key_file: Annotated[Path | None, BeforeValidator(_optional_path)] = Field(
        default=None, description="PEM private key of the heartbeat API; with tls_cert_file."
    )
    token_audiences: Annotated[list[str], NoDecode, BeforeValidator(_audiences)] = Field(
        default_factory=lambda: [DEFAULT_TOKEN_AUDIENCE],
        description=(
            "Token audiences the heartbeat API accepts (TokenReview), at least one. The"
            " default, a dedicated audience, means a heartbeat token cannot be replayed"
            " against the apiserver."
        ),
    )
    released_kinds: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_released_kinds)] = Field(
        default=("pods",),
        description=(
            "Kinds a stop deletes when the session controls them: its Pod always, and these"
            " (services, configmaps, secrets, persistentvolumeclaims) where listed."
        ),
    )
    max_session_bytes: int = Field(
        default=128 * 1024,
        ge=1024,
        le=MAX_STORED_OBJECT_BYTES,
        description=(
            "Largest Session, in bytes of JSON, that the admission webhook accepts (its"
            " spec.template is the part that grows)."
        ),
    )
    auth_cache_ttl: Annotated[timedelta, BeforeValidator(_auth_cache_ttl)] = Field(
        # Between the kube-apiserver's own caches (2m for a token webhook's verdicts, 5m for
        # an authorization webhook's): renewed in the background, a verdict costs a client
        # beating every 5 s about 0.03 reviews per heartbeat (docs/security.md).
        default=timedelta(minutes=3),
        description=(
            "How long authentication and authorization decisions are cached, at most 10m: a"
            " token's verdict no longer than the token lives, a refusal 10s at most."
        ),
    )
    leader_election: bool = Field(
        default=True,
        description="Elect one writer among replicas through a coordination.k8s.io Lease.",
    )
    leader_election_namespace: Annotated[str, BeforeValidator(_lease_namespace)] = Field(
        default="default", description="Namespace of the leader Lease (the operator's own)."
    )
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = Field(
        default="INFO",
        description="Name of a logging level: INFO tells each lifecycle step, WARNING less.",
    )
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = Field(
        default="json", description="Log line format."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read explicit values and the environment only; the YAML file is merged by
        :func:`load_settings`, below the environment."""
        return init_settings, env_settings

    @model_validator(mode="after")
    def _check_relations(self) -> Self:
        codes: list[str] = []
        summaries: list[str] = []
        if self.lease_ttl < _MIN_HEARTBEATS_PER_TTL * self.heartbeat_interval:
            codes.append(_TTL_BELOW_MINIMUM)
            summaries.append(
                _ttl_rule(
                    ("lease_ttl", format_duration(self.lease_ttl)),
                    ("heartbeat_interval", format_duration(self.heartbeat_interval)),
                )
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            codes.append(_TLS_UNPAIRED)
            summaries.append("tls_cert_file and tls_key_file must be given together")
        if self.webhook_port is not None and self.tls_cert_file is None:
            codes.append(_WEBHOOK_WITHOUT_TLS)
            summaries.append(_webhook_rule("webhook_port", "tls_cert_file"))
        for smaller, larger, why in _AT_MOST:
            low, high = getattr(self, smaller), getattr(self, larger)
            if low is not None and high is not None and low > high:
                codes.append(f"{_ABOVE}:{smaller}:{larger}")
                summaries.append(
                    _at_most_rule(
                        (smaller, format_duration(low)), (larger, format_duration(high)), why
                    )
                )
        if codes:
            raise PydanticCustomError(
                _INCONSISTENT, "{summary}", {"summary": "; ".join(summaries), "codes": codes}
            )
        return self


# camelCase keys of the YAML file (README, Configuration), by field name.
FILE_KEYS: Mapping[str, str] = {
    "lease_ttl": "leaseTTL",
    "heartbeat_interval": "heartbeatInterval",
    "expiry_check_interval": "expiryCheckInterval",
    "stop_timeout": "stopTimeout",
    "retention": "retention",
    "expiry_warning": "expiryWarning",
    "max_lifetime": "maxLifetime",
    "max_lifetime_bound": "maxLifetimeBound",
    "start_timeout": "startTimeout",
    "start_timeout_bound": "startTimeoutBound",
    "max_hold": "maxHold",
    "namespace": "namespace",
    "api_host": "apiHost",
    "api_port": "apiPort",
    "api_max_connections": "apiMaxConnections",
    "tls_cert_file": "tlsCertFile",
    "tls_key_file": "tlsKeyFile",
    "token_audiences": "tokenAudiences",
    "released_kinds": "releasedKinds",
    "max_session_bytes": "maxSessionBytes",
    "metrics_port": "metricsPort",
    "probe_port": "probePort",
    "webhook_port": "webhookPort",
    "auth_cache_ttl": "authCacheTTL",
    "leader_election": "leaderElection",
    "leader_election_namespace": "leaderElectionNamespace",
    "log_level": "logLevel",
    "log_format": "logFormat",
}
_FIELD_BY_FILE_KEY = {key: field for field, key in FILE_KEYS.items()}


@dataclass(frozen=True)
class _Given:
    """A value as the user wrote it, and the name they wrote it under."""

    label: str
    raw: Any


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``, like ``XG2G_SESSION_LEASE_TTL``."""
    return f"{ENV_PREFIX}{field.upper()}"


# What an unset optional setting means, shown as its default in --help.
_UNSET_MEANS: Mapping[str, str] = {
    "max_lifetime": "none",
    "max_lifetime_bound": "no bound",
    "start_timeout_bound": "no bound",
    "namespace": "all namespaces",
    "metrics_port": "the API port",
    "probe_port": "the API port",
    "webhook_port": "no webhook",
    "tls_cert_file": "plain HTTP",
    "tls_key_file": "plain HTTP",
}


def settings_help() -> str:
    """Every setting's environment variable, default and meaning, one per line (for --help)."""
    lines = ["settings (environment variables; also a YAML file with --config):"]
    for field, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = _UNSET_MEANS[field] if default is None else _format_value(default)
        lines.append(f"  {env_name(field):<40} {shown:<24} {info.description or ''}")
    return "\n".join(lines)


def _format_value(value: object) -> str:
    """A setting's value as a user writes it: ``on``/``off``, ``24h``, ``a,b``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list | tuple):
        return ",".join(_format_value(item) for item in value)
    return str(value)


def flag_name(field: str) -> str:
    """Return the command-line flag named in errors about an override, like ``--lease-ttl``."""
    return "--" + field.replace("_", "-")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from flags, environment, YAML file and defaults, in that precedence.

    ``overrides`` are command-line flag values keyed by field name; ``None`` means the flag
    was not given. The YAML file uses the camelCase keys of the README's configuration
    table; unknown keys are an error. Any invalid value raises :class:`ConfigError` with one
    line per bad setting.
    """
    given_overrides = {field: raw for field, raw in overrides.items() if raw is not None}
    unknown = sorted(set(given_overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting {flag_name(field)}" for field in unknown)
    from_file = _read_config_file(config_file) if config_file is not None else {}
    known = {env_name(field) for field in Settings.model_fields}
    misspelled = [
        _unknown_variable(name)
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    ]
    if misspelled:
        raise ConfigError(misspelled)
    try:
        from_env: dict[str, Any] = EnvSettingsSource(Settings)()
    except SettingsError as error:
        raise ConfigError([f"environment: {error}"]) from None

    given: dict[str, _Given] = {}
    given.update((f, _Given(FILE_KEYS[f], raw)) for f, raw in from_file.items())
    given.update((f, _Given(env_name(f), raw)) for f, raw in from_env.items())
    given.update((f, _Given(flag_name(f), raw)) for f, raw in given_overrides.items())

    # The environment outranks the file, but explicit arguments outrank the environment in
    # pydantic-settings, so a file value is passed only where the environment is silent.
    explicit: dict[str, Any] = {
        f: raw for f, raw in from_file.items() if f not in from_env
    } | given_overrides
    try:
        return Settings(**explicit)
    except ValidationError as error:
        raise ConfigError(_describe(error, given)) from None
    except SettingsError as error:
        raise ConfigError([f"environment: {error}"]) from None


def _read_config_file(path: Path) -> dict[str, object]:
    """Read the YAML file into raw values by field name; reject unknown keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read config file: {error.strerror or error}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError([f"{path}: not valid YAML{where}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a mapping of settings like 'leaseTTL: 60s'"])
    problems = [_unknown_key(path, key) for key in data if key not in _FIELD_BY_FILE_KEY]
    if problems:
        raise ConfigError(problems)
    return {_FIELD_BY_FILE_KEY[key]: raw for key, raw in data.items()}


def _unknown_variable(name: str) -> str:
    # A misspelled variable would otherwise leave its setting at the default, in silence.
    # Compared without the prefix that every name shares.
    known = sorted(field.upper() for field in Settings.model_fields)
    line = f"{name}: unknown setting"
    close = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), known, n=1)
    if close:
        line += f", did you mean {ENV_PREFIX}{close[0]}?"
    return line


def _unknown_key(path: Path, key: object) -> str:
    line = f"{path}: unknown setting {key!r}"
    if isinstance(key, str):
        folded = {known.lower(): known for known in _FIELD_BY_FILE_KEY}
        close = folded.get(key.lower()) or next(
            iter(difflib.get_close_matches(key, list(_FIELD_BY_FILE_KEY), n=1)), None
        )
        if close is not None:
            line += f", did you mean {close!r}?"
    return line


def _describe(error: ValidationError, given: Mapping[str, _Given]) -> list[str]:
    """Turn a pydantic error into one line per bad setting, named as the user wrote it."""
    lines: list[str] = []
    described: set[str] = set()
    for item in error.errors():
        loc = item["loc"]
        if item["type"] == _INCONSISTENT:
            lines.extend(_describe_relation(code, given) for code in item["ctx"]["codes"])
        elif loc and isinstance(loc[0], str) and loc[0] not in described:
            field = loc[0]
            described.add(field)
            source = given.get(field)
            label = source.label if source else env_name(field)
            raw = source.raw if source else item["input"]
            lines.append(f"{label}: {_must(item)} (got {raw!r})")
    return lines


def _must(item: ErrorDetails) -> str:
    """What a value must be, in the words of the operator's own messages."""
    context = item.get("ctx") or {}
    match item["type"]:
        case "greater_than_equal":
            return f"must be at least {context['ge']}"
        case "less_than_equal":
            return f"must be at most {context['le']}"
        case "literal_error":
            return f"must be {context['expected']}"
        case "int_parsing" | "int_type" | "int_from_float":
            return "must be a whole number"
        case _:
            return item["msg"]


def _ttl_rule(ttl: tuple[str, str], interval: tuple[str, str]) -> str:
    """The TTL rule broken, each setting given as (its name, its value)."""
    return (
        f"{ttl[0]} ({ttl[1]}) must be at least {_MIN_HEARTBEATS_PER_TTL} {_TIMES}"
        f" {interval[0]} ({interval[1]})"
    )


def _describe_relation(code: str, given: Mapping[str, _Given]) -> str:
    def label(field: str) -> str:
        source = given.get(field)
        return source.label if source else env_name(field)

    def shown(field: str) -> str:
        source = given.get(field)
        if source is not None and isinstance(source.raw, str):
            return source.raw.strip()
        raw = source.raw if source is not None else Settings.model_fields[field].default
        return format_duration(parse_duration(raw))

    if code == _TTL_BELOW_MINIMUM:
        return _ttl_rule(
            (label("lease_ttl"), shown("lease_ttl")),
            (label("heartbeat_interval"), shown("heartbeat_interval")),
        )
    if code == _WEBHOOK_WITHOUT_TLS:
        return _webhook_rule(label("webhook_port"), label("tls_cert_file"))
    if code.startswith(f"{_ABOVE}:"):
        _, smaller, larger = code.split(":")
        why = next(why for low, high, why in _AT_MOST if (low, high) == (smaller, larger))
        return _at_most_rule((label(smaller), shown(smaller)), (label(larger), shown(larger)), why)
    return f"{label('tls_cert_file')} and {label('tls_key_file')} must be given together"


def _at_most_rule(smaller: tuple[str, str], larger: tuple[str, str], why: str) -> str:
    """A setting above the one it must not exceed, each given as (its name, its value)."""
    return f"{smaller[0]} ({smaller[1]}) must be at most {larger[0]} ({larger[1]}): {why}"


def _webhook_rule(webhook_port: str, tls_cert_file: str) -> str:
    return (
        f"{webhook_port} needs {tls_cert_file}: the apiserver calls admission webhooks"
        " over HTTPS only"
    )
