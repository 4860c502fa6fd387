"""The verbs of ``kubectl session``, each a few lines over the modules that do the work."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient

from session_operator.api.bodies import HeartbeatBody
from session_operator.heartbeat_cli import TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV
from session_operator.heartbeat_client import HeartbeatClient, HeartbeatFailed
from session_operator.k8s.errors import KubernetesError, Rejected
from session_operator.k8s.rest import Rest
from session_operator.kubectl_session import beat, holds, kubeconfig
from session_operator.kubectl_session.describe import describe
from session_operator.kubectl_session.errors import CommandError, apiserver_failure
from session_operator.kubectl_session.listing import session_table
from session_operator.kubectl_session.logs import pod_log
from session_operator.kubectl_session.sessions import Sessions
from session_operator.kubectl_session.timeline import timeline
from session_operator.kubectl_session.tokens import request_token
from session_operator.kubectl_session.waiting import Target, wait_for
from session_operator.lease import TERMINAL_STATES
from session_operator.timestamps import format_timestamp


async def run(args: argparse.Namespace) -> int:
    """Run the verb of *args* against the kubeconfig's cluster; its exit code. A failure
    is a :class:`CommandError` with one sentence."""
    target = kubeconfig.resolve(args.kubeconfig, args.context, args.namespace)
    async with await kubeconfig.api_client(target) as api:
        rest = Rest(api, timeout=kubeconfig.REQUEST_TIMEOUT_SECONDS)
        sessions = Sessions(rest, target.namespace)
        try:
            match args.verb:
                case "list":
                    return await _list(sessions, args)
                case "get":
                    return await _get(sessions, args)
                case "describe":
                    return await _describe(sessions, args.name)
                case "beat":
                    return await _beat(rest, target.namespace, args)
                case "hold":
                    return await _hold(sessions, args)
                case "release":
                    return await _release(sessions, args.name)
                case "stop":
                    return await _stop(sessions, args)
                case "wait":
                    print(await wait_for(sessions, args.name, Target(args.target), args.timeout))
                    return 0
                case "logs":
                    return await _logs(api, sessions, args)
                case _:
                    raise CommandError(f"unknown verb {args.verb!r}")
        except KubernetesError as error:
            raise CommandError(apiserver_failure(error, kubeconfig.server(api))) from None


def _now() -> datetime:
    return datetime.now(UTC)


def terminal_width() -> int:
    """How many characters a table line may take: the terminal's width (``COLUMNS``
    first), else 80."""
    return shutil.get_terminal_size((80, 24)).columns


async def _list(sessions: Sessions, args: argparse.Namespace) -> int:
    items = await sessions.select(all_namespaces=args.all_namespaces, selector=args.selector)
    if not items:
        where = "" if args.all_namespaces else f' in namespace "{sessions.namespace}"'
        print(f"No sessions found{where}.", file=sys.stderr)
        return 0
    _print_table(items, args, all_namespaces=args.all_namespaces)
    return 0


async def _get(sessions: Sessions, args: argparse.Namespace) -> int:
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for name in args.names:
        try:
            found.append(await sessions.get(name))
        except CommandError as error:
            missing.append(str(error))
    if found:
        _print_table(found, args, all_namespaces=False)
    for problem in missing:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if missing else 0


def _print_table(
    items: list[dict[str, Any]], args: argparse.Namespace, *, all_namespaces: bool
) -> None:
    lines = session_table(
        items,
        _now(),
        all_namespaces=all_namespaces,
        wide=args.output == "wide",
        width=terminal_width(),
    )
    print("\n".join(lines))


async def _describe(sessions: Sessions, name: str) -> int:
    session = await sessions.get(name)
    try:
        events = await sessions.events(session)
        note = None
    except Rejected as error:  # no right to list Events: the rest is still worth showing
        events, note = [], f"  (Events left out: {apiserver_failure(error, '')})"
    lines = describe(session, timeline(session, events), _now(), terminal_width())
    print("\n".join(lines + ([note] if note else [])))
    return 0


async def _beat(rest: Rest, namespace: str, args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        raise CommandError(f"where is the heartbeat API? give --url or set {URL_ENV}")
    endpoint = beat.Endpoint(url, Path(args.ca_file) if args.ca_file else None, args.allow_http)
    address = f"{namespace}/{args.name}"
    token_file = args.token_file or os.environ.get(TOKEN_FILE_ENV)
    token = os.environ.get(TOKEN_ENV)
    if not (args.service_account or token_file or token):
        raise CommandError(
            "no token for the heartbeat API: give --service-account NAME (a ServiceAccount"
            " bound to session-heartbeat that you may create tokens for), --token-file FILE,"
            f" or set {TOKEN_ENV}"
        )

    async def open_client() -> tuple[HeartbeatClient, float | None]:
        try:
            if args.service_account:
                issued = await request_token(
                    rest, namespace, args.service_account, _now(), args.audience
                )
                return endpoint.client(address, token=issued.value), issued.renew_in(_now())
            if token_file:
                return endpoint.client(address, token_file=Path(token_file)), None
            return endpoint.client(address, token=token), None
        except ValueError as error:  # a URL the client cannot use, or plain HTTP not allowed
            raise CommandError(str(error)) from None

    acknowledgements = 0

    def tell(ack: HeartbeatBody) -> None:
        nonlocal acknowledgements
        acknowledgements += 1
        print(beat.acknowledged(args.name, ack, _now()), flush=True)

    try:
        if not args.watch:
            tell(await beat.beat_once(open_client))
            return 0
        ended = await beat.beat_until_ended(open_client, tell)
    except HeartbeatFailed as failure:
        raise CommandError(str(failure)) from None
    if not acknowledgements:  # over before it began: a name mistyped, a session long gone
        raise CommandError(f"heartbeat refused ({ended.status}): {ended.detail}")
    print(beat.ended(args.name, ended))
    return 0


async def _hold(sessions: Sessions, args: argparse.Namespace) -> int:
    now = _now()
    end = holds.requested_end(now, args.duration, args.until)
    holds.check_holdable(args.name, await sessions.get(args.name))
    await sessions.set_hold(args.name, format_timestamp(end))
    print(holds.held(args.name, end, now))
    return 0


async def _release(sessions: Sessions, name: str) -> int:
    nothing_to_do = holds.not_held(name, await sessions.get(name))
    if nothing_to_do is not None:
        print(nothing_to_do)
        return 0
    await sessions.set_hold(name, None)
    print(f"session/{name}: hold released")
    return 0


async def _stop(sessions: Sessions, args: argparse.Namespace) -> int:
    session = await sessions.get(args.name)
    status: Mapping[str, Any] = session.get("status") or {}
    if status.get("state") in TERMINAL_STATES:
        reason = f" ({status['stopReason']})" if status.get("stopReason") else ""
        print(f"session/{args.name}: already {status['state']}{reason}")
        return 0
    if (session.get("spec") or {}).get("stop") is True:
        print(f"session/{args.name}: stop already requested")
    else:
        await sessions.request_stop(args.name)
        print(f"session/{args.name}: stop requested")
    if args.wait:
        print(await wait_for(sessions, args.name, Target.STOPPED, args.timeout))
    return 0


async def _logs(api: ApiClient, sessions: Sessions, args: argparse.Namespace) -> int:
    session = await sessions.get(args.name)
    pod = await sessions.workload_pod(session)
    if pod is None:
        if not (session.get("spec") or {}).get("template"):
            raise CommandError(f'session "{args.name}" runs no Pod: it has no spec.template')
        state = (session.get("status") or {}).get("state") or "none yet"
        raise CommandError(f'session "{args.name}" has no Pod now (state: {state})')
    out = sys.stdout.buffer
    written = 0
    async for chunk in pod_log(
        api,
        sessions.namespace,
        pod["metadata"]["name"],
        container=args.container,
        follow=args.follow,
        tail=args.tail,
    ):
        written += out.write(chunk)
        out.flush()
    phase = (pod.get("status") or {}).get("phase")
    if not written and phase == "Pending":
        print(f"Pod {pod['metadata']['name']} is Pending: it has no log yet.", file=sys.stderr)
    return 0
