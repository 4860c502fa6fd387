"""The field tier of ``make bench`` (``--field``): load as a real cluster makes it.

Many clients, each beating its own Session with its own projected ServiceAccount token over
TLS, to two replicas behind one address as a Service spreads them; Sessions with a Pod
template, so each has a Pod; unrelated Pods churning beside them. See :mod:`bench.field.run`.
"""
