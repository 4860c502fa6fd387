"""``make profile-runtime``: what a Session watch event and a per-Session timer cost in each
Session runtime the operator could have: its own list-watch and store, or kopf with its
handlers and diff-base storages (docs/decisions/0003-session-runtime.md)."""
