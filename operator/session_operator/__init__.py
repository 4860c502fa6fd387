"""session-lease-operator: Sessions with a lease, kept alive by heartbeats, on Kubernetes."""

__version__ = "0.1.0"
