"""The list-watch cache (client-go's ``tools/cache``): one watch of Sessions per process
feeds one store, which the controller and the heartbeat API both read; one watch of the
workload Pods feeds the Pod store beside it. It imports neither ``api`` nor
``controller``."""
