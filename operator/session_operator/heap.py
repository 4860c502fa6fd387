"""The process's heap and Python's cyclic garbage collector.

Every replica holds every Session and its Pod: about nine objects each that the collector
tracks (the Session, its spec and status, its raw status and conditions, its ref, its
Pod's summary and the Pod store's map). A full collection walks every tracked object with
the event loop held: 0.34 s at 50,000 Sessions with Pods on an idle core of the
benchmark's machine, about twice that beside a busy apiserver, and a new leader's resync
allocates enough to set one off as it takes over (docs/benchmarks.md, the 20:42 run).

So what the process holds once a listing is loaded, and as it takes the lead, is moved
out of the collector's reach (``gc.freeze``); a later full collection walks only what
came after. A frozen object is still freed when its last reference goes; only a
reference cycle among frozen objects is never found. Freezing happens at a start's
listings and at a takeover, not per event, so what that can keep is bounded.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze(after: str) -> None:
    """Move every object the process holds now out of the collector's reach; *after*
    names the moment, for the debug log."""
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("after %s: %d objects out of the garbage collector's reach", after, frozen)
