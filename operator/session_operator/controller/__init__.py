"""The operator's control loop: a store fed by the watch, a work queue, lease deadlines."""
