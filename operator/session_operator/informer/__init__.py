"""The list-watch cache (client-go's ``tools/cache``): one watch of Sessions per process
feeds one store, which the controller and the heartbeat API both read; the Pods kopf
reports are kept beside it. It imports neither ``api`` nor ``controller``."""
