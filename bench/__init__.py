"""``make bench``: scale and latency of heartbeats and expiry on a real local control plane.

Run it as ``python -m bench`` (``--quick`` for a smoke run with tiny numbers). It starts its
own etcd + kube-apiserver + kube-controller-manager and the operator, measures the four
phases of docs/benchmarks.md (raw write ceiling, heartbeats, expiry lag, cost), prints one table and
writes the same as JSON under ``bench/results/``.
"""
