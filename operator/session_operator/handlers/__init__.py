"""kopf wiring: which events and timers reach the control loop. Thin on purpose."""
