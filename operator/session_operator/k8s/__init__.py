"""Kubernetes I/O: every call the operator and the heartbeat API make to the apiserver."""
