"""kopf wiring: its login only. Thin on purpose."""
