"""The outcomes of an API request that are not a success, one exception each.

:mod:`session_operator.api.problems` maps each to its HTTP status, in one place. Failures
to reach the apiserver are ``k8s.errors.ApiUnavailable`` (503), never one of these.
"""

from __future__ import annotations

from session_operator.lease import SessionState, StopReason


class Unauthenticated(Exception):
    """No token, a malformed one, or one the apiserver does not accept (401)."""


class BadRequest(Exception):
    """A malformed request: a path parameter that can never name a session, a body that is
    not an AdmissionReview (400)."""


class Forbidden(Exception):
    """The caller may not send heartbeats for this session (403)."""


class SessionNotFound(Exception):
    """No such session, in the cache nor in the apiserver (404)."""


class LeaseNotInitialised(Exception):
    """The session exists but the operator has not given it a lease yet (409, retry)."""


class SessionGone(Exception):
    """The session is stopping, terminal or its lease has expired (410): stop beating."""

    def __init__(
        self,
        session_id: str,
        state: SessionState,
        stop_reason: StopReason | None,
        addressed_as: str | None = None,
    ):
        """*addressed_as*: the session as the request named it (default: its sessionID)."""
        reason = f" ({stop_reason.value})" if stop_reason else ""
        super().__init__(f"session {addressed_as or session_id} is {state.value}{reason}")
        self.session_id = session_id
        self.state = state
        self.stop_reason = stop_reason


class WriteContention(Exception):
    """The compare-and-set write kept losing to other writers (503, retry)."""


class CacheNotSynced(Exception):
    """The Session cache has not loaded its first listing yet, so a miss proves nothing (503)."""


class AuthenticationUnavailable(Exception):
    """The apiserver could not judge the token: its authenticator failed, or too many
    reviews are already under way (503, retry)."""
