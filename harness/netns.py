"""Network namespaces the harness makes for its node, and entering one.

The node's containerd, kubelet and Pods live in a namespace of their own (``ip netns``),
so the Pod bridge, its addresses and its routes never touch the machine's own network
(docs/node.md). Deleting the namespace removes the bridge and the Pods' veth ends with it.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.debian_packages import Program
from harness.processes import unmount_under

IP = Program("ip", "iproute2")
NETNS_DIR = Path("/run/netns")
"""Where ``ip netns`` and containerd pin named namespaces."""
_CLONE_NEWNET = 0x40000000


class NamespaceError(RuntimeError):
    """A network namespace could not be made, entered or configured."""


@dataclass(frozen=True)
class NetworkNamespace:
    """A named network namespace, pinned at ``/run/netns/<name>``."""

    name: str

    @property
    def path(self) -> Path:
        """The file that pins it (what :func:`enter_network_namespace` takes)."""
        return NETNS_DIR / self.name

    def create(self) -> None:
        """Make it, with its loopback up."""
        self.ip("netns", "add", self.name)
        self.ip("-n", self.name, "link", "set", "lo", "up")

    def delete(self) -> None:
        """Remove it (and every interface still in it); nothing if it is gone."""
        if self.path.exists():
            self.ip("netns", "delete", self.name, check=False)

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip ARGS``; :class:`NamespaceError` on a failure when *check*."""
        result = subprocess.run(
            [str(IP.path()), *args], capture_output=True, text=True, check=False, timeout=30
        )
        if check and result.returncode != 0:
            raise NamespaceError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def peer_namespaces(self) -> set[str]:
        """The named namespaces at the other end of this one's veths (a Pod's, when this
        is the node's); empty once it is gone."""
        if not self.path.exists():
            return set()
        links = self.ip("-n", self.name, "-o", "link", "show", "type", "veth", check=False)
        return set(re.findall(r"link-netns (\S+)", links))


def enter_network_namespace(path: Path) -> None:
    """Move the calling thread into the network namespace pinned at *path* (the mount
    namespace stays the machine's, so the kubelet's mounts are containerd's too)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise NamespaceError(f"setns({path}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


def pinned_namespaces() -> set[str]:
    """The names pinned under ``/run/netns`` now."""
    return set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()


def remove_pinned(name: str) -> None:
    """Unpin namespace *name* (``ip netns delete`` of a namespace ``ip`` did not make)."""
    unmount_under(NETNS_DIR / name)
    (NETNS_DIR / name).unlink(missing_ok=True)
