"""The operator's HTTP server: probes, metrics, and the heartbeat API."""
