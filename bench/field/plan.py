"""How much of everything the field tier does: the full plan, and the smoke run's."""

from __future__ import annotations

from dataclasses import dataclass

from session_operator.heartbeat_client import INTERVAL_JITTER

FIELD_SESSIONS = 10_000
"""Live Sessions at the failover and the restart, by default."""
INTERVAL_SECONDS = 5.0
"""The default heartbeat interval, at which every sustain step's clients beat."""


def beat_rate(sessions: int) -> float:
    """Beats per second of *sessions* clients at the default interval, with the client
    library's jitter (up to a tenth of the interval, a twentieth on average)."""
    return sessions / (INTERVAL_SECONDS * (1 + INTERVAL_JITTER / 2))


@dataclass(frozen=True)
class FieldPlan:
    """The field tier's sizes and durations."""

    mode: str
    namespaces: int
    accounts_per_namespace: int
    raw_sessions: int
    ceiling_seconds: float
    step_shares: tuple[float, ...]
    """Sustain steps, as shares of the goal (80 % of raw ceiling x 5 s); stop at a failure."""
    step_sizes: tuple[int, ...]
    """Sustain steps as sizes (the smoke run's), used when given instead of the shares."""
    warm_up: float
    window: float
    """Seconds each sustain step is metered, and each raw open loop at a step's rate lasts:
    an apiserver's tail grows over minutes of patches, and a p99 of 11,000 samples catches
    pauses one of 700 misses."""
    churn_pods: int
    churn_rate: float
    """Unrelated Pod events per second while the clients beat."""
    pod_cost_rate: float
    pod_cost_seconds: float
    noop_sessions: int
    expiry_sessions: int
    expiry_window: float
    failover_sessions: int
    due_sessions: int
    due_spread: float
    cold_seconds: float

    @classmethod
    def full(cls, sessions: int = FIELD_SESSIONS) -> FieldPlan:
        """The field tier at the defaults; the failover and restart at *sessions*."""
        return cls(
            mode="field" if sessions == FIELD_SESSIONS else f"field at {sessions:,}",
            namespaces=4,
            accounts_per_namespace=10,
            raw_sessions=3000,
            ceiling_seconds=10.0,
            step_shares=(0.25, 0.5, 0.75, 1.0, 1.25),
            step_sizes=(),
            warm_up=10.0,
            # Every token's verdict is renewed once in it: at nine tenths of a jittered
            # authCacheTTL (3 min), 154-162 s after the first beat.
            window=160.0,
            churn_pods=2000,
            churn_rate=50.0,
            pod_cost_rate=100.0,
            pod_cost_seconds=20.0,
            noop_sessions=1000,
            expiry_sessions=200,
            expiry_window=10.0,
            failover_sessions=sessions,
            due_sessions=300,
            due_spread=30.0,
            cold_seconds=20.0,
        )

    @classmethod
    def quick(cls, sessions: int | None = None) -> FieldPlan:
        """A smoke run with tiny numbers: every phase once, in a few minutes; with
        *sessions*, the failover and restart at that many, with the full tier's leases
        falling due around the kill (the rest stays tiny)."""
        return cls(
            mode="field quick" if sessions is None else f"field quick, failover at {sessions:,}",
            namespaces=2,
            accounts_per_namespace=2,
            raw_sessions=100,
            ceiling_seconds=2.0,
            step_shares=(),
            step_sizes=(40, 80),
            warm_up=3.0,
            window=8.0,
            churn_pods=40,
            churn_rate=10.0,
            pod_cost_rate=20.0,
            pod_cost_seconds=3.0,
            noop_sessions=30,
            expiry_sessions=20,
            expiry_window=3.0,
            failover_sessions=400 if sessions is None else sessions,
            due_sessions=20 if sessions is None else 300,
            due_spread=6.0 if sessions is None else 30.0,
            cold_seconds=3.0,
        )

    def steps(self, goal_sessions: int) -> list[int]:
        """The sustain steps' sizes, given the goal's number of sessions."""
        if self.step_sizes:
            return list(self.step_sizes)
        return [max(1, round(share * goal_sessions)) for share in self.step_shares]

    def progress_steps(self) -> dict[str, float]:
        """The run's steps with their expected seconds (the progress bar's weights)."""
        steps = len(self.step_sizes or self.step_shares)
        sustain = steps * (self.window + self.warm_up + 20)
        return {
            "control plane": 8.0,
            "tenants": 5.0,
            "raw": self.raw_sessions / 200 + self.ceiling_seconds + steps * self.window,
            "replicas": 5.0,
            "churn": self.churn_pods / 150,
            "pod events": 2 * self.pod_cost_seconds,
            "noop": self.noop_sessions / 40 + self.window + 8,
            "expiry": self.expiry_sessions / 40 + self.expiry_window + 10,
            "sustain": sustain,
            "populate": self.failover_sessions / 200,
            "failover": self.due_spread + 45,
            "restart": self.failover_sessions / 2000 + self.cold_seconds + 5,
        }
