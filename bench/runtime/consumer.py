"""One Session runtime under test, alone in a fresh process:
``python -m bench.runtime.consumer VARIANT NAMESPACE`` (credentials from ``KUBECONFIG``).

Each runtime ends where the operator's does, in a :class:`~SessionStore`: the operator's own
list-watch (``informer/session_cache.py``) fills it directly; kopf's ``@on.event`` handler
decodes the event's object and fills it. The orchestrator (``bench.runtime.run``) talks over
stdin and stdout, one line each way: ``mark`` is answered with a JSON object of the CPU
seconds this process has used (``time.process_time``, all its threads), the events handled
and the distinct objects seen so far; ``stop`` ends the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import kopf

from session_operator.informer.session_cache import SessionCache
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.connection import connect
from session_operator.k8s.rest import Rest
from session_operator.lease import LIVE_STATES
from session_operator.models import GROUP, PLURAL, STATE_LABEL, VERSION, Session

LIST_TIMEOUT_SECONDS = 60.0
DIFF_BASE_ANNOTATION = "kopf.zalando.org/last-handled-configuration"
"""Where kopf's default diff-base storage (and the slim one) keeps the last handled essence."""
LEASE_NAME = "session-lease-operator"
"""The Lease the one-timer variant hangs its timer on (the operator's leader Lease name)."""


@dataclass(frozen=True)
class Variant:
    """A Session runtime: the operator's own, or kopf with one choice of handlers and
    diff-base storage."""

    name: str
    description: str
    kopf: bool = True
    diffbase: str = "default"
    """kopf's diff-base storage: ``default`` (annotations), ``slim`` or ``none``."""
    on_update: bool = False
    timers: str = ""
    """``per-session``: a kopf timer on every live Session; ``one``: one, on the Lease."""

    @property
    def takes_events(self) -> bool:
        """Whether the Sessions' watch events reach this runtime's handlers."""
        return not self.timers


VARIANTS = (
    Variant("own", "own list-watch into SessionStore (informer/)", kopf=False),
    Variant("kopf-event-nodiff", "kopf @on.event into SessionStore, a diff-base that keeps "
            "nothing", diffbase="none"),
    Variant("kopf-event", "kopf @on.event into SessionStore, default diff-base"),
    Variant("kopf-update", "kopf @on.event + @on.update, default diff-base", on_update=True),
    Variant("kopf-update-slim", "kopf @on.event + @on.update, slim diff-base (same essence, "
            "no deep copy of the body)", diffbase="slim", on_update=True),
    Variant("kopf-timers", "kopf @timer on every live Session (labelSelector on the state)",
            timers="per-session"),
    Variant("kopf-one-timer", "kopf @timer on one object, the Lease", timers="one"),
    Variant("own-again", "own list-watch again (Sessions now carry kopf's annotation and "
            "finalizer)", kopf=False),
)  # fmt: skip
LIVE_SELECTOR = f"{STATE_LABEL} in ({','.join(sorted(state.value for state in LIVE_STATES))})"
"""The requested shape's selection: Sessions whose ``xg2g.io/state`` is a live state."""


class SlimDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base with the same essence, built from what the essence keeps.

    kopf's ``build`` deep-copies the whole body (status and ``managedFields`` included) on
    every event, then deletes all but the spec, the labels and the annotations; this hands
    it a body of those alone. With extra fields (``@on.field`` of a status field) it is
    kopf's own build.
    """

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        if extra_fields:
            return super().build(body=body, extra_fields=extra_fields)
        metadata = body.get("metadata", {})
        kept = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        kept["metadata"] = {
            key: metadata[key]
            for key in ("labels", "annotations", "ownerReferences")
            if key in metadata
        }
        return super().build(body=kopf.Body(cast(kopf.RawBody, kept)))


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """A diff-base that keeps nothing: kopf then builds no essence per event. Safe only
    without change handlers (``@on.create``/``update``/``delete``/``field``)."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class Counter:
    """The events a runtime handled and the distinct objects it saw."""

    def __init__(self) -> None:
        self.events = 0
        self.names: set[str] = set()

    def count(self, name: str) -> None:
        """One event (or timer run) for the object *name*."""
        self.events += 1
        self.names.add(name)


class CountingStore(SessionStore):
    """The operator's store, counting what it is given."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self._counter = counter

    def update(self, session: Session) -> Session:
        self._counter.count(session.ref.name)
        return super().update(session)


def kopf_settings(variant: Variant) -> kopf.OperatorSettings:
    """kopf's defaults, but no Events posted, and the variant's diff-base and selector."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    if variant.diffbase == "slim":
        settings.persistence.diffbase_storage = SlimDiffBaseStorage()
    elif variant.diffbase == "none":
        settings.persistence.diffbase_storage = NoDiffBaseStorage()
    if variant.timers == "per-session":
        settings.watching.label_selectors[GROUP, PLURAL] = LIVE_SELECTOR
    return settings


def kopf_registry(variant: Variant, store: SessionStore, counter: Counter) -> kopf.OperatorRegistry:
    """The handlers of *variant*, in a registry of their own."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return await kopf.login_via_async_client(**kwargs)

    async def counted(name: str, **_: Any) -> None:
        counter.count(name)

    def is_leader_lease(name: str, **_: Any) -> bool:
        return name == LEASE_NAME

    if variant.timers == "per-session":
        kopf.timer(GROUP, VERSION, PLURAL, interval=timer_interval(), registry=registry)(counted)
    elif variant.timers == "one":
        kopf.timer("coordination.k8s.io", "v1", "leases", interval=timer_interval(),
                   when=is_leader_lease, registry=registry)(counted)  # fmt: skip
    else:

        @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
        async def session_event(event: kopf.RawEvent, **_: Any) -> None:
            if event["type"] != "DELETED":
                store.update(Session.from_body(event["object"]))

        if variant.on_update:
            kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)(counted)
    return registry


def timer_interval() -> float:
    """The timers' interval in seconds (``RUNTIME_TIMER_INTERVAL``, from the orchestrator)."""
    return float(os.environ.get("RUNTIME_TIMER_INTERVAL", "10"))


async def run(variant: Variant, namespace: str) -> None:
    """Run *variant* on the Sessions of *namespace*; answer ``mark`` until ``stop``."""
    counter = Counter()
    store = CountingStore(counter)
    stop_flag = asyncio.Event()
    if variant.kopf:
        runtime = kopf.operator(
            registry=kopf_registry(variant, store, counter),
            settings=kopf_settings(variant),
            standalone=True,
            identity=f"runtime-cost-{os.getpid()}",  # type: ignore[arg-type]
            clusterwide=False,
            namespaces=[namespace],
            stop_flag=stop_flag,
        )
    else:
        rest = Rest(await connect(), timeout=LIST_TIMEOUT_SECONDS)
        runtime = SessionCache.for_namespace(rest, namespace, store).run()
    task = asyncio.create_task(runtime)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while (await commands.readline()).strip() == b"mark":
        mark = {"cpu": time.process_time(), "events": counter.events, "seen": len(counter.names)}
        print(json.dumps(mark), flush=True)
    stop_flag.set()
    if not variant.kopf:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    """Entry point: ``VARIANT NAMESPACE``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    name, namespace = sys.argv[1:3]
    variant = next(variant for variant in VARIANTS if variant.name == name)
    asyncio.run(run(variant, namespace))


if __name__ == "__main__":
    main()
