#!/usr/bin/python3
"""runc, minus the capabilities the machine's bounding set lacks.

kind runs every node ``docker run --privileged`` and execs in it with
``docker exec --privileged``; Docker then asks runc for every capability the kernel knows.
Where root itself lacks one (this project's CI machine has no CAP_SYS_RESOURCE), runc
fails: "unable to start container process: unable to apply caps: operation not
permitted". The kind engine (harness/kind_engine.py) registers this file as its default
runtime: it removes what the bounding set lacks from the bundle's config.json (create,
run) or the process file (exec), then execs runc with the same arguments.
"""

import itertools
import json
import os
import sys

RUNC = "/usr/sbin/runc"
# linux/capability.h, in order; the bounding set is a bit mask over these.
NAMES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)


def missing() -> set[str]:
    """The capabilities this process's bounding set lacks."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("CapBnd:"))
    mask = int(line.split()[1], 16)
    return {f"CAP_{name}" for bit, name in enumerate(NAMES) if not mask >> bit & 1}


def bound(path: str, in_process: bool) -> None:
    """Drop the missing capabilities from the OCI file at *path*."""
    if not os.path.isfile(path):
        return
    with open(path) as file:
        document = json.load(file)
    process = document.get("process", {}) if in_process else document
    sets = process.get("capabilities") or {}
    lacking = missing()
    for name, capabilities in sets.items():
        sets[name] = [cap for cap in capabilities if cap not in lacking]
    with open(path + ".bounded", "w") as file:
        json.dump(document, file)
    os.replace(path + ".bounded", path)


def main(argv: list[str]) -> None:
    """Bound the files *argv* names, then become runc."""
    for flag, value in itertools.pairwise(argv):
        if flag in ("--bundle", "-b"):
            bound(os.path.join(value, "config.json"), in_process=True)
        elif flag in ("--process", "-p"):
            bound(value, in_process=False)
    for arg in argv:
        if arg.startswith("--bundle="):
            bound(os.path.join(arg.removeprefix("--bundle="), "config.json"), in_process=True)
        elif arg.startswith("--process="):
            bound(arg.removeprefix("--process="), in_process=False)
    os.execv(RUNC, [RUNC, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
