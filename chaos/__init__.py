"""The fault harness: ``make chaos`` injects faults, ``make soak`` churns; both judge the
invariants of the lease system on a local control plane (see :mod:`chaos.run`)."""
