"""The Session size webhook registered with a control plane, as the chart registers it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.e2e.conftest import Cluster


def register_size_webhook(cluster: Cluster, name: str, url: str, ca_file: Path) -> None:
    """A ValidatingWebhookConfiguration *name* sending every Session create and update to
    *url*, trusted by the CA in *ca_file*, refusing writes while nobody answers (Fail)."""
    registration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "session-size.xg2g.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "clientConfig": {
                    "url": url,
                    "caBundle": base64.b64encode(ca_file.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["xg2g.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["sessions"],
                    }
                ],
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(registration))
