"""``kubectl session``: Sessions from a person's terminal, with their kubeconfig.

The ``kubectl-session`` executable is installed with the package; on ``PATH`` it is the
kubectl plugin ``kubectl session``. docs/kubectl-session.md describes the verbs and how
``beat`` gets a token for the operator's audience.
"""
