"""Tokens for the operator's audience, made from the person's kubeconfig (TokenRequest).

A kubeconfig's credentials are for the apiserver; the heartbeat API takes only tokens for
its own audience (``session-lease-operator``), so that a heartbeat token is no key to the
cluster. ``beat --service-account NAME`` asks the apiserver for a short-lived token of
that ServiceAccount, for that audience: what ``kubectl create token NAME --audience
session-lease-operator`` does. The person needs ``create`` on ``serviceaccounts/token``
for it; the ServiceAccount needs the ``session-heartbeat`` role (docs/kubectl-session.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from session_operator.config import DEFAULT_TOKEN_AUDIENCE
from session_operator.k8s.errors import NotFound, Rejected
from session_operator.k8s.rest import Rest
from session_operator.kubectl_session.errors import CommandError, apiserver_failure
from session_operator.timestamps import instant_or_none as timestamp

TOKEN_SECONDS = 3600
"""How long a token is asked for; the apiserver may grant less (never under 10 minutes)."""
RENEW_AT = 0.8
"""A token is replaced once this share of its life has passed."""


@dataclass(frozen=True)
class IssuedToken:
    """A token and when the apiserver says it stops working."""

    value: str
    expires_at: datetime

    def renew_in(self, now: datetime) -> float:
        """Seconds from *now* until the token should be replaced: when
        :data:`RENEW_AT` of the life it has left at *now* has passed."""
        return max((self.expires_at - now).total_seconds() * RENEW_AT, 0.0)


async def request_token(
    rest: Rest,
    namespace: str,
    service_account: str,
    now: datetime,
    audience: str = DEFAULT_TOKEN_AUDIENCE,
) -> IssuedToken:
    """A new token of ServiceAccount *namespace*/*service_account* for *audience*."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": TOKEN_SECONDS},
    }
    try:
        answer = await rest.request("POST", path, body=body)
    except NotFound:
        raise CommandError(
            f'serviceaccount "{service_account}" not found in namespace "{namespace}"'
        ) from None
    except Rejected as error:
        # Most often a 403: say which permission beat needs, after the apiserver's reason.
        raise CommandError(
            f"{apiserver_failure(error, '')} (beat --service-account needs create on"
            f" serviceaccounts/token for {namespace}/{service_account}: docs/kubectl-session.md)"
        ) from None
    status = answer.get("status") or {}
    token = status.get("token")
    if not isinstance(token, str) or not token:
        raise CommandError(f"the apiserver issued no token for serviceaccount {service_account}")
    expires_at = timestamp(status.get("expirationTimestamp"))
    return IssuedToken(token, expires_at or now + timedelta(seconds=TOKEN_SECONDS))
