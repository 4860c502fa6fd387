"""``python -m harness``: build the binaries, or run a local cluster.

- ``build``: build (or find in the cache) etcd, kube-apiserver, kube-controller-manager, kubectl;
  ``build helm kind prometheus`` builds those tools instead (``controlplane`` names the
  binaries above; prometheus brings promtool);
  ``build node`` adds kube-scheduler and kubelet (the optional node, docs/node.md);
  ``build engine`` installs the Docker engine and debootstrap (Debian packages) if missing.
- ``image``: build the operator image on the harness's Docker engine (``make image``).
- ``base-lock``: make the image's Debian base anew and record its package versions.
- ``prepare [unit] [e2e]``: install and build everything those test tiers need, then check
  it is there (``make test`` runs it before its first test; :mod:`harness.prepare`).
- ``which NAME``: print where the cache keeps NAME (``helm``, ``kind``, ``prometheus``,
  ``kubectl``); builds nothing.
- ``up``: start the local control plane, install the CRDs, print how to use it, wait for Ctrl-C.
- ``up --node`` and ``run --node`` also start a node (docs/node.md), so Pods really run.
- ``run``: like ``up``, plus the operator itself in the foreground, its API on 127.0.0.1
  (what ``make run`` does). It first checks that the API's port is free
  (:mod:`harness.make_run_checks`). With ``KUBECONFIG`` set, no local control plane is
  started: the operator runs against that cluster, once its file and apiserver are found.
  Ctrl-C says what it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.base_image import BaseImageError, default_base, relock_base
from harness.binaries import (
    TOOLS,
    BuildError,
    ensure_built,
    ensure_tool,
    find_repo_root,
    go_tool,
    toolchain,
)
from harness.cluster import ControlPlaneError, KubectlError, LocalControlPlane
from harness.debian_packages import (
    ENGINE_PROGRAMS,
    IMAGE_PROGRAMS,
    PackageError,
    ensure_installed,
)
from harness.engine import DockerEngine, EngineError
from harness.image import OPERATOR_IMAGE, build_operator_image
from harness.make_run_checks import RunRefused, refuse_stale_kubeconfig, refuse_taken_port
from harness.netns import NamespaceError
from harness.node import NODE_PROGRAMS, NodeError
from harness.node_images import NodeImageError
from harness.node_start import prepare_node
from harness.prepare import prepare as prepare_tiers
from harness.processes import terminate
from harness.provisions import TIERS
from session_operator.config import (
    DEFAULT_TOKEN_AUDIENCE,
    ConfigError,
    Settings,
    env_name,
    load_settings,
)

SAMPLE_SESSION = "hack/samples/session.yaml"
NODE_SAMPLE = "hack/samples/session-with-pod.yaml"
HEARTBEAT_ROLE = "manifests/session-heartbeat-clusterrole.yaml"
DEMO_CLIENT = "demo-client"
# How long the operator may take to stop before SIGKILL: against a cluster of the user's,
# time to hand its Lease over cleanly; before the local control plane stops, half a second.
# It releases its Lease at once; what it may wait for after that (kopf waits up to 5 s for
# tasks started after it) is moot on a cluster about to go, and Ctrl-C must end in ~3 s.
OPERATOR_STOP_GRACE = 10.0
OPERATOR_STOP_GRACE_LOCAL = 0.5


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m harness")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the control-plane binaries into the cache")
    build.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help=f"what to build: controlplane (the default), node, {', '.join(TOOLS)}, engine",
    )
    image = commands.add_parser("image", help="build the operator image (Docker engine of its own)")
    image.add_argument("--tag", default=OPERATOR_IMAGE, help=f"its name (default {OPERATOR_IMAGE})")
    image.add_argument(
        "--base-image",
        default="",
        help="build on this image (python:3.11-slim, say); default: a Debian base made here",
    )
    image.add_argument("--save", type=Path, help="also write the image here (docker save)")
    prepare = commands.add_parser(
        "prepare", help="install and build what the test tiers need, then check it is there"
    )
    prepare.add_argument(
        "tiers", nargs="*", metavar="TIER", help=f"{' or '.join(TIERS)} (default: both)"
    )
    commands.add_parser(
        "base-lock", help="make the image's Debian base anew and record its package versions"
    )
    which = commands.add_parser("which", help="print the cached path of a tool or kubectl")
    which.add_argument("tool", choices=[*TOOLS, "kubectl"])
    up = commands.add_parser("up", help="start a local control plane and wait")
    run = commands.add_parser(
        "run", help="start a local control plane (unless KUBECONFIG) and run the operator"
    )
    for sub in (up, run):
        sub.add_argument("--workdir", type=Path, help="keep the cluster's files here")
        sub.add_argument(
            "--node",
            action="store_true",
            help="also start a node: kube-scheduler, kubelet, containerd, Pod network (as root)",
        )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            unknown = set(args.targets) - {"controlplane", "node", *TOOLS, "engine"}
            if unknown:
                build.error(f"unknown TARGET {', '.join(sorted(unknown))}")
            _build(args.targets or ["controlplane"])
            return 0
        if args.command == "prepare":
            unknown = set(args.tiers) - set(TIERS)
            if unknown:
                prepare.error(f"unknown TIER {', '.join(sorted(unknown))}")
            return prepare_tiers(tuple(args.tiers) or TIERS)
        if args.command in ("image", "base-lock"):
            _with_engine(args)
            return 0
        if args.command == "which":
            print(toolchain().kubectl if args.tool == "kubectl" else go_tool(args.tool).binary)
            return 0
        if args.command == "run" and os.environ.get("KUBECONFIG"):
            kubeconfig = os.environ["KUBECONFIG"]
            _refuse_taken_ports(load_settings())
            refuse_stale_kubeconfig(kubeconfig)
            print(f"using the cluster of KUBECONFIG={kubeconfig}", flush=True)
            with _operator(kubeconfig, OPERATOR_STOP_GRACE) as operator:
                return operator.wait()
        return _with_local_cluster(args.workdir, args.command == "run", args.node)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: invalid configuration: {problem}", file=sys.stderr)
        return 2
    except (
        BuildError,
        ControlPlaneError,
        KubectlError,
        PackageError,
        EngineError,
        BaseImageError,
        NodeError,
        NodeImageError,
        NamespaceError,
        RunRefused,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _build(targets: list[str]) -> None:
    for target in dict.fromkeys(targets):
        if target == "engine":
            ensure_installed(IMAGE_PROGRAMS)
            print("image tools:", " ".join(str(program.path()) for program in IMAGE_PROGRAMS))
        elif target in ("controlplane", "node"):
            if target == "node":
                ensure_installed(NODE_PROGRAMS)
            chain = ensure_built(toolchain(), node=target == "node")
            versions = f"{chain.kube_version} (etcd {chain.etcd_version})"
            print(f"{target} {versions} in {chain.kube_dir.parent}")
        else:
            tool = ensure_tool(go_tool(target))
            print(f"{tool.name} {tool.version} in {tool.binary}")


def _with_engine(args: argparse.Namespace) -> None:
    """``image`` or ``base-lock``, on a Docker engine started for it."""
    on_a_given_base = args.command == "image" and args.base_image
    ensure_installed(ENGINE_PROGRAMS if on_a_given_base else IMAGE_PROGRAMS)
    with DockerEngine() as engine:
        if args.command == "base-lock":
            print(f"base image {relock_base(engine, default_base())}")
            return
        built = build_operator_image(engine, args.tag, args.base_image or None)
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            engine.docker("save", f"--output={args.save}", built.tag)
            print(f"saved {built.tag} to {args.save}")
        print(built.summary())


def _with_local_cluster(workdir: Path | None, run_operator: bool, with_node: bool) -> int:
    # A bad setting, or a port another program holds, stops here, in one line, before
    # anything is built or started.
    settings = load_settings()
    if run_operator:
        _refuse_taken_ports(settings)
    chain = ensure_built(toolchain())
    started = time.monotonic()
    print(
        f"starting etcd {chain.etcd_version} + kube-apiserver {chain.kube_version} on loopback ...",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        # Unwound last in, first out: each line is printed just before what it names stops.
        cluster = stack.enter_context(LocalControlPlane(chain, workdir=workdir))
        stack.callback(
            _say, "stopping the control plane (kube-controller-manager, kube-apiserver, etcd) ..."
        )
        repo = find_repo_root()
        cluster.kubectl("apply", "--server-side", "-f", str(repo / "crds"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", "crd/sessions.xg2g.io"
        )
        _create_demo_client(cluster, repo)
        print(f"control plane ready in {time.monotonic() - started:.1f}s; CRDs installed\n")
        pod_logs = None
        if with_node:
            node = stack.enter_context(prepare_node(cluster))
            stack.callback(
                _say, f"stopping the node {node.name} (its Pods, kubelet, containerd) ..."
            )
            pod_logs = node.layout.pod_logs_dir
            print(f"node {node.name} Ready in {node.started_seconds:.1f}s\n", flush=True)
        return _serve(cluster, settings.api_port, repo, run_operator, pod_logs)


def _serve(
    cluster: LocalControlPlane, port: int, repo: Path, run_operator: bool, pod_logs: Path | None
) -> int:
    """Print how to use the cluster, then wait for Ctrl-C, or run the operator. *pod_logs*
    is the node's directory of Pod logs (``None``: no node)."""
    kubectl = cluster.toolchain.kubectl
    if not run_operator:
        print_how_to_use(kubectl, cluster.kubeconfig, port, repo, pod_logs)
        print("Ctrl-C stops the control plane.", flush=True)
        while True:
            time.sleep(3600)
    with _operator(str(cluster.kubeconfig), OPERATOR_STOP_GRACE_LOCAL) as operator:
        # The lines name the API's port: print them only once the operator listens there.
        if _wait_until_listening(operator, port):
            print_how_to_use(kubectl, cluster.kubeconfig, port, repo, pod_logs)
        return operator.wait()


def _refuse_taken_ports(settings: Settings) -> None:
    """:class:`RunRefused` if a port the operator would listen on is taken."""
    host = operator_environment(os.environ, "")["XG2G_SESSION_API_HOST"]
    for field in ("api_port", "metrics_port", "probe_port"):
        port = getattr(settings, field)
        if port is not None:
            refuse_taken_port(host, port, env_name(field))


def _say(line: str) -> None:
    print(line, flush=True)


def print_how_to_use(
    kubectl_binary: Path, kubeconfig: Path, port: int, repo: Path, pod_logs: Path | None
) -> None:
    """The lines for another terminal: the sample session, its watch, its heartbeats; with
    a node (*pod_logs*, where its Pods' log files are), the sample Pod and its logs."""
    kubectl = f"{kubectl_binary} --kubeconfig={kubeconfig}"
    heartbeat = f"http://127.0.0.1:{port}/api/v3/namespaces/default/sessions/living-room"
    client = Path(sys.executable).parent / "session-operator"
    print("From another terminal:")
    print(f"  export KUBECONFIG={kubeconfig}")
    print(f"  {kubectl} apply -f {repo / SAMPLE_SESSION}")
    print(f"  {kubectl} get sessions -A -w")
    print("To start it again (a stopped session is kept for the retention, 24h):")
    print(f"  {kubectl} delete -f {repo / SAMPLE_SESSION} --ignore-not-found")
    print("Keep it alive (a ServiceAccount allowed to beat in `default`):")
    print(
        f"  export SESSION_API_TOKEN=$({kubectl} create token {DEMO_CLIENT} -n default"
        f" --audience={DEFAULT_TOKEN_AUDIENCE})"
    )
    print(f'  curl -s -X POST -H "Authorization: Bearer $SESSION_API_TOKEN" {heartbeat}/heartbeat')
    print("or with the operator's own client (it reads the token from there), until Ctrl-C:")
    print(
        f"  {client} heartbeat living-room -n default --url http://127.0.0.1:{port} --allow-http -v"
    )
    if pod_logs is not None:
        print(f"Real Pods: a Session with a template runs it on the node ({repo / NODE_SAMPLE}).")
        print(f"  {kubectl} apply -f {repo / NODE_SAMPLE}")
        print(f"  {kubectl} get pods -o wide -w")
        print(
            "A Pod's logs (`kubectl logs` cannot reach the kubelet in the node's own network"
            " namespace) are files, NAMESPACE_POD_UID/CONTAINER/:"
        )
        print(f"  tail -n 20 {pod_logs}/default_web_*/web/*.log\n", flush=True)
    else:
        print(
            "A Session with spec.template stays `starting`: this local control plane has no"
            " node to run its Pod (`make run NODE=1` starts one).\n",
            flush=True,
        )


def _wait_until_listening(
    operator: subprocess.Popen[bytes], port: int, within: float = 60.0
) -> bool:
    """Wait until the operator answers on *port*; False if it exited first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and operator.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _create_demo_client(cluster: LocalControlPlane, repo: Path) -> None:
    """A ServiceAccount bound to the ``session-heartbeat`` ClusterRole in ``default``."""
    cluster.kubectl("apply", "-f", str(repo / HEARTBEAT_ROLE))
    cluster.kubectl("create", "serviceaccount", DEMO_CLIENT, "-n", "default")
    cluster.kubectl(
        "create", "rolebinding", f"{DEMO_CLIENT}-heartbeat", "-n", "default",
        "--clusterrole=session-heartbeat", f"--serviceaccount=default:{DEMO_CLIENT}",
    )  # fmt: skip


def operator_environment(environ: Mapping[str, str], kubeconfig: str) -> dict[str, str]:
    """The environment of the operator ``make run`` starts: *environ* with *kubeconfig*,
    text logs and the API on loopback, unless *environ* sets a log format or an address."""
    return {
        # In a terminal: readable lines rather than the JSON a cluster's log collector wants.
        "XG2G_SESSION_LOG_FORMAT": "text",
        # Plain HTTP, with heartbeat tokens in it: not for the machine's other interfaces.
        "XG2G_SESSION_API_HOST": "127.0.0.1",
        **environ,
        "KUBECONFIG": kubeconfig,
    }


@contextlib.contextmanager
def _operator(kubeconfig: str, grace: float) -> Iterator[subprocess.Popen[bytes]]:
    """The operator against *kubeconfig*, in the foreground: Ctrl-C reaches it too. Stopped
    (saying so; SIGKILL after *grace* seconds) when the block is left while it runs."""
    env = operator_environment(os.environ, kubeconfig)
    operator = subprocess.Popen([sys.executable, "-m", "session_operator", "run"], env=env)
    interrupted = False
    try:
        yield operator
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # Ctrl-C reaches the operator too, and it may have stopped already: say so anyway.
        if interrupted or operator.poll() is None:
            _say("stopping the operator ...")
            terminate(operator, grace=grace)


if __name__ == "__main__":
    sys.exit(main())
