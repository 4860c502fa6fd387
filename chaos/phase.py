"""One namespace of Sessions under test: created, beaten, stopped, watched, then judged.

A :class:`Phase` creates its Sessions (those with a workload get a Pod, which the
harness makes Ready as a kubelet would), keeps a watch on them that records every state
(:class:`~chaos.invariants.Observation`), has their clients beat from the clients' process,
and carries out each session's :class:`~chaos.invariants.Intent` when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp

from chaos.invariants import (
    Intent,
    Observation,
    Replica,
    SessionRecord,
    Verdict,
    Window,
    deadline,
    judge,
)
from chaos.world import LEASE_NAMESPACE, World
from harness.kube import ApiServerError, WatchExpired
from session_operator.k8s.outage_record import OUTAGES_CONFIGMAP, WINDOWS_KEY, decode_windows
from session_operator.k8s.rest import MERGE_PATCH
from session_operator.models import GROUP, KIND, SESSION_LABEL, VERSION, sessions_path
from session_operator.timestamps import parse_timestamp

WORKLOAD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}
READY_POD_STATUS = {
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
}
PROBE = "probe"
PROBE_LEASE = {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}
UNREACHABLE = (aiohttp.ClientError, TimeoutError, ApiServerError, OSError)


class Phase:
    """The Sessions of one fault (or of the soak), in namespace ``chaos-<name>``."""

    def __init__(self, world: World, name: str, ttl: int, interval: int) -> None:
        self.world = world
        self.namespace = f"chaos-{name}"
        self.ttl = ttl
        self.interval = interval
        self._watched: dict[str, SessionRecord] = {}
        self.workloads: set[str] = set()
        self.faults: list[Window] = []
        self.kills: list[float] = []
        """When a replica was SIGKILLed."""
        self.remarks: list[str] = []
        """What the phase saw that is worth telling, though no invariant is at stake."""
        self._tasks: list[asyncio.Task[None]] = []
        self._counters_at_start: dict[str, float] = {}
        self._probe_expiry = ""
        self._facts_seen = 0

    @property
    def records(self) -> dict[str, SessionRecord]:
        """The sessions under test (the probe session is not one of them)."""
        return {name: r for name, r in self._watched.items() if name != PROBE}

    # -- set-up and tear-down ---------------------------------------------------------

    async def open(self) -> None:
        """Create the namespace and the probe session; start the watch and the kubelet."""
        await self.world.kubectl("create", "namespace", self.namespace)
        self._facts_seen = len(self.world.clients.facts)
        for replica in self.world.replicas:
            counter = await replica.expired_counter(self.world.http)
            self._counters_at_start[replica.instance] = counter or 0.0
        self._tasks = [
            asyncio.create_task(self._watch_sessions()),
            asyncio.create_task(self._play_kubelet()),
        ]
        self._watched[PROBE] = SessionRecord(PROBE, time.time(), 3600, 1, Intent.BEAT)
        await self._create(PROBE, {"lease": PROBE_LEASE})
        await self.until(lambda: self._live(PROBE), 30, f"{PROBE} ready")
        while not self._probe_expiry:  # the lease a later written beat must move
            await self._probe_beat_written()
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stop the clients still beating and every session still live (as a user would,
        so nothing of this phase expires during the next one); stop watching."""
        live = [r.name for r in self.records.values() if r.stop is None]
        for name in live:
            if self.records[name].intent is Intent.BEAT:
                await self.world.clients.send("drop", session=self._ref(name))
        for name in [*live, PROBE]:
            with contextlib.suppress(*UNREACHABLE):
                await self._patch(name, {"spec": {"stop": True}})
        for task in self._tasks:
            task.cancel()

    async def add(self, name: str, intent: Intent, workload: bool) -> SessionRecord:
        """Create a session, wait until it is ready, and have its client beat it."""
        spec: dict[str, Any] = {
            "lease": {"ttlSeconds": self.ttl, "heartbeatIntervalSeconds": self.interval}
        }
        if workload:
            spec["template"] = WORKLOAD
            self.workloads.add(name)
        record = SessionRecord(name, time.time(), self.ttl, self.interval, intent)
        self._watched[name] = record
        created = await self._create(name, spec)
        record.created_at = parse_timestamp(created["metadata"]["creationTimestamp"]).timestamp()
        await self.until(lambda: self._live(name, "ready"), 60, f"{name} ready")
        await self.world.clients.send("beat", session=self._ref(name))
        await self.until(lambda: record.last_heartbeat is not None, 30, f"{name} beaten")
        return record

    async def add_many(self, plan: Sequence[tuple[str, Intent, bool]]) -> None:
        """:meth:`add` for each (name, intent, workload), a few at a time."""
        limit = asyncio.Semaphore(8)

        async def one(name: str, intent: Intent, workload: bool) -> None:
            async with limit:
                await self.add(name, intent, workload)

        await asyncio.gather(*(one(*entry) for entry in plan))

    # -- what users and clients do ----------------------------------------------------

    async def act(self, names: Iterable[str]) -> None:
        """Carry out the intent of each session named: its client stops beating, or it is
        stopped with ``spec.stop``, or deleted."""
        for name in names:
            record = self.records[name]
            record.acted_at = time.time()
            if record.intent is Intent.DROP:
                await self.world.clients.send("drop", session=self._ref(name))
            elif record.intent is Intent.USER_STOP:
                await self._patch(name, {"spec": {"stop": True}})
            elif record.intent is Intent.DELETE:
                await self.world.api.expect("DELETE", sessions_path(self.namespace, name))

    def named(self, intent: Intent, workload: bool | None = None) -> list[str]:
        """The sessions with *intent* (and with or without a workload), in creation order."""
        return [
            r.name
            for r in self.records.values()
            if r.intent is intent and (workload is None or (r.name in self.workloads) == workload)
        ]

    async def until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        """Wait until *condition* holds (checked every 10 ms); fail after *within* seconds."""
        deadline_at = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline_at:
                raise TimeoutError(f"{self.namespace}: {what} not seen within {within:.0f}s")
            await asyncio.sleep(0.01)

    # -- recovery ---------------------------------------------------------------------

    async def recovered(self, after: float, within: float = 180.0) -> float:
        """When the system was whole again after *after*: a heartbeat through the Service
        was written (the probe session's lease moved) and a live leader renewed its Lease."""
        written_at: float | None = None
        renewed_at: float | None = None
        limit = time.monotonic() + within
        while time.monotonic() < limit:
            now = time.time()
            if written_at is None and await self._probe_beat_written():
                written_at = now
            if renewed_at is None:
                with contextlib.suppress(*UNREACHABLE):
                    leader, renewed = await self.world.leader()
                    if leader is not None and renewed is not None and renewed > after:
                        renewed_at = now
            if written_at is not None and renewed_at is not None:
                return max(written_at, renewed_at)
            await asyncio.sleep(0.25)
        raise TimeoutError(f"not recovered within {within:.0f}s of the fault")

    async def _probe_beat_written(self) -> bool:
        url = self.world.service_url
        url += f"/api/v3/namespaces/{self.namespace}/sessions/{PROBE}/heartbeat"
        headers = {"Authorization": f"Bearer {self.world.token}"}
        try:
            async with self.world.http.post(url, headers=headers) as response:
                if response.status != 200:
                    return False
                expiry = str((await response.json())["lease_expires_at"])
        except (*UNREACHABLE, ValueError):
            return False
        moved = bool(self._probe_expiry) and expiry > self._probe_expiry
        self._probe_expiry = expiry
        return moved

    # -- the end ----------------------------------------------------------------------

    def due(self) -> float:
        """When every stop this phase waits for must have happened, stop timeout included."""
        outages = self.faults
        ends = [deadline(r, outages) for r in self.records.values() if r.intent is Intent.DROP]
        acted = [r.acted_at for r in self.records.values() if r.acted_at is not None]
        latest = max([*ends, *(a + self.interval for a in acted), time.time()])
        return latest + self.world.settings.stop_timeout + 2

    async def settle(self) -> None:
        """Wait until every outcome is in (or due): stops seen, Pods gone, deletes done."""
        until = self.due()
        while time.time() < until:
            if await self._settled():
                return
            await asyncio.sleep(0.5)

    async def verdict(self) -> Verdict:
        """Judge the phase: every invariant, counted."""
        now = time.time()
        pods = await self._pods_left()
        events = await self._lease_expired_events()
        by_session = Counter(event["regarding"]["name"] for event in events)
        for record in self.records.values():
            record.lease_expired_events = by_session.get(record.name, 0)
        replicas = []
        for replica in self.world.replicas:
            counter = await replica.expired_counter(self.world.http)
            start = self._counters_at_start.get(replica.instance, 0.0)
            replicas.append(Replica(replica.instance, None if counter is None else counter - start))
            for killed in replica.killed:
                replicas.append(Replica(killed, None))
        verdict = judge(
            self.records.values(),
            now=now,
            faults=self.faults,
            recorded_outages=await self._recorded_outages(),
            stop_timeout=self.world.settings.stop_timeout,
            pods_left=pods,
            replicas=replicas,
            events_by_instance=Counter(event.get("reportingInstance", "") for event in events),
            kills=self.kills,
        )
        for name in verdict.lost_events:
            self.remarks.append(f"{name}: its LeaseExpired Event went with the killed leader")
        for fact in self.world.clients.facts[self._facts_seen :]:
            if fact["event"] != "burst":
                continue
            self.remarks.append(f"{fact['session']}: burst answered {fact['outcomes']}")
            if set(fact["outcomes"]) - {"200", "503"}:
                verdict.rules += 1
                verdict.note(f"{fact['session']}: burst answers {fact['outcomes']}")
        return verdict

    async def _settled(self) -> bool:
        for record in self.records.values():
            if record.intent is Intent.BEAT:
                continue
            if record.stop is None or (record.intent is Intent.DELETE and not record.gone):
                return False
        try:
            return not await self._pods_left()
        except UNREACHABLE:
            return False

    async def _pods_left(self) -> dict[str, int]:
        listing = await self.world.api.expect("GET", f"/api/v1/namespaces/{self.namespace}/pods")
        counts: Counter[str] = Counter()
        for pod in listing.get("items", []):
            owner = (pod["metadata"].get("labels") or {}).get(SESSION_LABEL)
            if owner and owner in self.records and self.records[owner].stop is not None:
                counts[owner] += 1
        return dict(counts)

    async def _lease_expired_events(self) -> list[dict[str, Any]]:
        path = f"/apis/events.k8s.io/v1/namespaces/{self.namespace}/events"
        listing = await self.world.api.expect("GET", path)
        return [e for e in listing.get("items", []) if e.get("reason") == "LeaseExpired"]

    async def _recorded_outages(self) -> list[Window]:
        path = f"/api/v1/namespaces/{LEASE_NAMESPACE}/configmaps/{OUTAGES_CONFIGMAP}"
        status, body = await self.world.api.call("GET", path)
        if status != 200:
            return []
        windows = decode_windows((body.get("data") or {}).get(WINDOWS_KEY, "[]"))
        opened = min((r.created_at for r in self.records.values()), default=time.time())
        return [
            Window(w.start.timestamp(), w.end.timestamp())
            for w in windows
            if w.end.timestamp() >= opened
        ]

    # -- Kubernetes I/O ---------------------------------------------------------------

    def _ref(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def _live(self, name: str, state: str | None = None) -> bool:
        record = self._watched.get(name)
        if record is None or not record.observations:
            return False
        last = record.observations[-1]
        return last.state == state if state else last.state in ("new", "starting", "ready")

    async def _create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        return await self.world.api.expect("POST", sessions_path(self.namespace), body)

    async def _patch(self, name: str, patch: dict[str, Any]) -> None:
        path = sessions_path(self.namespace, name)
        await self.world.api.expect("PATCH", path, patch, MERGE_PATCH)

    async def _watch_sessions(self) -> None:
        api = self.world.api
        while True:
            try:
                version = await self._relist()
                async for seen, event in api.watch(self.namespace, version):
                    self._observe(seen, event)
            except WatchExpired:
                continue
            except UNREACHABLE:
                await asyncio.sleep(0.2)

    async def _relist(self) -> str:
        """LIST the namespace (at the start, and after a watch that broke): what changed
        meanwhile is observed now, and a Session seen before but listed no more is gone.
        Returns the version to watch from."""
        listing = await self.world.api.expect("GET", sessions_path(self.namespace))
        seen = time.time()
        listed = set()
        for item in listing.get("items", []):
            listed.add(item["metadata"]["name"])
            self._observe(seen, {"type": "MODIFIED", "object": item})
        for name, record in self._watched.items():
            if name not in listed and record.observations and not record.observations[-1].deleted:
                self._observe(seen, {"type": "DELETED", "object": {"metadata": {"name": name}}})
        return str(listing["metadata"]["resourceVersion"])

    def _observe(self, seen: float, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name")
        record = self._watched.get(name or "")
        if record is None or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return
        status = obj.get("status") or {}
        record.observations.append(
            Observation(
                seen=seen,
                state=status.get("state"),
                lease_expires_at=_epoch(status.get("leaseExpiresAt")),
                last_heartbeat=_epoch(status.get("lastHeartbeat")),
                stop_reason=status.get("stopReason"),
                deleted=event["type"] == "DELETED",
            )
        )

    async def _play_kubelet(self) -> None:
        """Make every Pod of a live session Ready, as the kubelet would once it runs."""
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        while True:
            with contextlib.suppress(*UNREACHABLE):
                listing = await self.world.api.expect("GET", path)
                for pod in listing.get("items", []):
                    conditions = (pod.get("status") or {}).get("conditions") or []
                    if any(c.get("type") == "Ready" for c in conditions):
                        continue
                    name = pod["metadata"]["name"]
                    await self.world.api.call(
                        "PATCH", f"{path}/{name}/status", READY_POD_STATUS, MERGE_PATCH
                    )
            await asyncio.sleep(0.3)


def _epoch(timestamp: str | None) -> float | None:
    return parse_timestamp(timestamp).timestamp() if timestamp else None


def intents(count: int, rng: random.Random) -> list[tuple[Intent, bool]]:
    """A shuffled mix of intents for *count* sessions: a third beat throughout, a third
    stop beating, the others are stopped or deleted; half of each kind run a workload."""
    mix = [Intent.BEAT, Intent.DROP, Intent.USER_STOP, Intent.BEAT, Intent.DROP, Intent.DELETE]
    chosen = [mix[i % len(mix)] for i in range(count)]
    seen: Counter[Intent] = Counter()
    plan = []
    for intent in chosen:
        plan.append((intent, seen[intent] % 2 == 0))
        seen[intent] += 1
    rng.shuffle(plan)
    return plan
