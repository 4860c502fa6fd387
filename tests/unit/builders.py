"""What the unit tests share: Session bodies as the lifecycle, the watch and the controller
see them, a JSON-patch applier, scripted stand-ins for the apiserver and its watch, a
controller, and the command run as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Reconciler
from session_operator.informer.pod_store import PodStore
from session_operator.informer.reflector import Reflector
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.errors import Invalid
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import Listing, ListWatch, WatchEvent
from session_operator.lease import SessionState
from session_operator.lifecycle import JsonPatch, LifecycleSettings
from session_operator.models import FINALIZER, STATE_LABEL
from session_operator.workload import PodSummary

T = TypeVar("T")

# A Session as the lifecycle decides on it: living-room in media, created at CREATED, its
# lease running until EXPIRES.

UID = "6f1c1f9e-0000-4000-8000-000000000001"
CREATED = "2026-11-23T10:00:00.123Z"
CREATED_AT = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
EXPIRES = "2026-11-23T10:01:00.123Z"
EXPIRES_AT = datetime(2026, 11, 23, 10, 1, 0, 123000, tzinfo=UTC)
LAST_HEARTBEAT = "2026-11-23T10:00:00.123Z"
STOP_TIMEOUT = timedelta(seconds=60)
RETENTION = timedelta(hours=24)
START_TIMEOUT = timedelta(minutes=10)
MAX_HOLD = timedelta(hours=8)
SETTINGS = LifecycleSettings(
    lease_ttl=timedelta(seconds=60),
    heartbeat_interval=timedelta(seconds=5),
    stop_timeout=STOP_TIMEOUT,
    retention=RETENTION,
    max_lifetime=None,
    max_lifetime_bound=None,
    start_timeout=START_TIMEOUT,
    start_timeout_bound=None,
    max_hold=MAX_HOLD,
    expiry_warning=timedelta(0),
)
TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "player", "image": "busybox"}]}}
GENERATION = 3
# Well inside the lease: nothing expires at this instant.
MIDWAY = EXPIRES_AT - timedelta(seconds=30)


def make_body(
    *,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    finalizers: Sequence[str] = (),
    created: str = CREATED,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {
            "name": "living-room",
            "namespace": "media",
            "uid": UID,
            "resourceVersion": "42",
            "generation": GENERATION,
            "creationTimestamp": created,
            "labels": dict(labels or {}),
        },
        "spec": dict(spec or {}),
        "status": dict(status or {}),
    }
    if finalizers:
        body["metadata"]["finalizers"] = list(finalizers)
    return body


def live_status(
    state: SessionState = SessionState.READY, expires: str = EXPIRES, **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "state": state.value,
        "sessionID": UID,
        "leaseTTLSeconds": 60,
        "heartbeatInterval": 5,
        "leaseExpiresAt": expires,
        "lastHeartbeat": LAST_HEARTBEAT,
        "observedGeneration": GENERATION,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "NoWorkload",
                "message": "the session runs no workload",
                "lastTransitionTime": "2026-11-23T10:00:00Z",
                "observedGeneration": GENERATION,
            },
            {
                "type": "LeaseValid",
                "status": "True",
                "reason": "LeaseGranted",
                "message": f"lease runs until {expires}",
                "lastTransitionTime": "2026-11-23T10:00:00Z",
                "observedGeneration": GENERATION,
            },
        ],
    }
    status.update(extra)
    return status


def stored(
    state: SessionState = SessionState.READY,
    *,
    spec: Mapping[str, Any] | None = None,
    expires: str = EXPIRES,
    label: str | None = "same",
    **extra: Any,
) -> dict[str, Any]:
    """A body as stored after initialisation; *label* ``"same"`` mirrors the state (and
    the operator's finalizer is there, as the label write leaves it)."""
    labels = {STATE_LABEL: state.value if label == "same" else label} if label else {}
    status = live_status(state, expires, **extra)
    return make_body(spec=spec, status=status, labels=labels, finalizers=[FINALIZER])


def with_template(state: SessionState, **extra: Any) -> dict[str, Any]:
    return stored(state, spec={"template": TEMPLATE}, **extra)


def deleting(body: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(body))
    result["metadata"]["deletionTimestamp"] = "2026-11-23T10:00:30Z"
    return result


class PatchTestFailed(Exception):
    """A JSON-patch ``test`` operation did not match (the apiserver answers 422)."""


def apply_patch(body: Mapping[str, Any], patch: JsonPatch) -> dict[str, Any]:
    """Apply the subset of RFC 6902 the lifecycle writes (test, add, replace, remove; object
    members and list items) to a copy."""
    result = copy.deepcopy(dict(body))
    for operation in patch:
        *parents, leaf = (
            part.replace("~1", "/").replace("~0", "~")
            for part in operation["path"].strip("/").split("/")
        )
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if leaf == "-" else int(leaf)
            present = index < len(target)
            current = target[index] if present else None
        else:
            present, current = leaf in target, target.get(leaf)
        if operation["op"] == "test":
            if not present or current != operation["value"]:
                raise PatchTestFailed(f"{operation['path']}: {current!r}")
        elif operation["op"] == "replace":
            assert present, f"replace of a missing member {operation['path']}"
            target[index if isinstance(target, list) else leaf] = operation["value"]
        elif operation["op"] == "add" and isinstance(target, list):
            target.insert(index, operation["value"])
        elif operation["op"] == "add":
            target[leaf] = operation["value"]
        elif operation["op"] == "remove":
            assert present, f"remove of a missing member {operation['path']}"
            del target[index if isinstance(target, list) else leaf]
        else:
            raise AssertionError(f"unexpected op {operation['op']}")
    return result


# A Session as the watch delivers it.


def listed_body(name: str, version: int, session_id: str | None = None) -> dict[str, Any]:
    """Session *name* in ``media`` at *version*, as a LIST or WATCH delivers it: ready with
    *session_id* if given, else without a status yet."""
    return {
        "metadata": {
            "namespace": "media",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
            "creationTimestamp": "2026-11-23T09:59:00Z",
        },
        "status": {"state": "ready", "sessionID": session_id} if session_id else {},
    }


class ScriptedListWatch(ListWatch):
    """LISTs and WATCHes that play a script: a watch waits forever after its events, a
    streaming list ends after its own. Without *streams*, the apiserver finds a streaming
    list invalid (as one without WatchList does)."""

    def __init__(
        self,
        listings: list[Listing[dict[str, Any]] | Exception],
        watches: list[list[WatchEvent | Exception]],
        streams: list[list[WatchEvent | Exception]] | None = None,
    ):
        self.listings = listings
        self.watches = watches
        self.streams = streams
        self.watched_from: list[str] = []
        self.lists = 0
        self.stream_lists = 0

    async def watch_list(self) -> AsyncIterator[WatchEvent]:
        self.stream_lists += 1
        if self.streams is None:
            raise Invalid("400: sendInitialEvents is forbidden for watch")
        for step in self.streams.pop(0) if self.streams else []:
            if isinstance(step, Exception):
                raise step
            yield step

    async def list(self, decode: Callable[[dict[str, Any]], T | None]) -> Listing[T]:
        self.lists += 1
        listing = self.listings.pop(0)
        if isinstance(listing, Exception):
            raise listing
        decoded = (decode(item) for item in listing.items)
        return Listing([item for item in decoded if item is not None], listing.resource_version)

    async def watch(self, resource_version: str) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(resource_version)
        for step in self.watches.pop(0) if self.watches else []:
            if isinstance(step, Exception):
                raise step
            yield step
        await asyncio.Event().wait()


def listed_pods(*pods: PodSummary) -> PodStore:
    """A Pod store whose watch has listed exactly *pods*."""
    store = PodStore()
    store.replace_all(pods)
    store.mark_listed()
    return store


async def run_cache_until(cache: Reflector[Any, Any], done: Callable[[], object]) -> None:
    """Run *cache* until *done* holds (at most two seconds)."""
    task = asyncio.create_task(cache.run())
    try:
        for _ in range(200):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the cache never got there")
    finally:
        task.cancel()


# The controller.

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
"""The clock of :func:`controller_without_deadlines`."""
EXPIRY_CHECK = timedelta(milliseconds=200)


def leased_body(name: str, expires_at: datetime, state: str = "ready") -> dict[str, Any]:
    """Session *name* in ``media`` in *state*, its lease running out at *expires_at*."""
    return {
        "metadata": {
            "name": name,
            "namespace": "media",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "creationTimestamp": "2026-11-23T09:00:00Z",
        },
        "status": {
            "state": state,
            "leaseTTLSeconds": 60,
            "heartbeatInterval": 5,
            "leaseExpiresAt": expires_at.isoformat().replace("+00:00", "Z"),
        },
    }


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel *task* and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def controller_without_deadlines(reconciler: Reconciler) -> SessionController:
    """A leading controller at :data:`NOW` over empty stores that finds lapsed leases only
    by its backstop, every :data:`EXPIRY_CHECK`."""
    leading = asyncio.Event()
    leading.set()
    return SessionController(
        reconciler, SessionStore(), listed_pods(), lambda: NOW, leading, EXPIRY_CHECK,
        exact_deadlines=False,
    )  # fmt: skip


# The apiserver.


class FakeRest(Rest):
    """Answers every request with the next of *answers* (an exception is raised)."""

    def __init__(self, answers: list[dict[str, Any] | Exception]) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self._answers = answers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        self.requests.append((method, path, body))
        await asyncio.sleep(0)
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


# The command.


def session_operator(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``session-operator ARGS`` with *env* over an environment cleared of every setting,
    kubeconfig and heartbeat variable of this machine."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XG2G_SESSION_", "SESSION_API_"))
        and key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return subprocess.run(
        [sys.executable, "-m", "session_operator", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=60,
        check=False,
    )
