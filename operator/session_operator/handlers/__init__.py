"""kopf wiring: which workload Pod events reach the control loop. Thin on purpose."""
