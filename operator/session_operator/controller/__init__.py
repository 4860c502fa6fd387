"""The operator's control loop: a work queue fed by the informer, lease deadlines, leader
election."""
