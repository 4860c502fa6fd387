"""Check that the tests can only pass for reasons a fresh machine also has.

Run by ``make test`` before anything else, with the base interpreter (standard library
only). Two kinds of hidden install step make the tests pass here and fail on a fresh
clone, and this refuses both:

* the project importable from the base interpreter, outside ``.venv``: a test that
  starts a Python other than the virtualenv's would still find it;
* a tool the tests find on ``PATH`` that ``make`` did not install. The tests run with a
  ``PATH`` of their own (``--path-dir``): the virtualenv's ``bin``, then links to the few
  machine tools listed in :data:`MACHINE_TOOLS`. A test that runs anything else by name
  fails on every machine, not only on a fresh one. The tools ``make`` builds (kubectl,
  helm, kind, etcd, ...) are run by their path in the binary cache, never by name.

Exit 0 when clean, 1 with one line per finding and how to remove it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

# The top-level packages of this repository; none may be importable outside .venv.
PROJECT_PACKAGES = ("session_operator", "bench", "chaos")
DISTRIBUTION = "session-lease-operator"

# What a fresh machine has and the tests may run by name: a shell, make and its recipes'
# utilities, Go (the control plane and the tools are built from source), and the coreutils
# the README's commands use. `docker` is optional: kind runs it by name. The Docker engine
# of the image tests is the harness's own (harness.engine), run by
# absolute path; without it those tests say why and skip.
MACHINE_TOOLS = (
    "sh",
    "bash",
    "make",
    "go",
    "env",
    "grep",
    "awk",
    "touch",
    "rm",
    "mkdir",
    "sleep",
    "timeout",
)
OPTIONAL_MACHINE_TOOLS = ("docker",)


def importable_project_packages(python: str) -> list[str]:
    """One finding per project package that *python* can import outside the repository."""
    findings = []
    for name in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        mapped = sorted(set(packages_distributions().get(name, [])))
        distributions = mapped or _installed(DISTRIBUTION)
        if distributions:
            remedy = f"{python} -m pip uninstall {' '.join(distributions)}"
        elif os.environ.get("PYTHONPATH"):
            remedy = "unset PYTHONPATH"
        else:
            remedy = f"remove {origin.parent} from {python}'s sys.path"
        findings.append(
            f"{name} is importable from the base interpreter {python} ({origin}), outside "
            f".venv, so tests may pass here and fail on a fresh machine; remove it: {remedy}"
        )
    return findings


def _installed(distribution: str) -> list[str]:
    # An editable install maps no top-level package to its distribution; ask by name.
    try:
        version(distribution)
    except PackageNotFoundError:
        return []
    return [distribution]


def link_machine_tools(path_dir: Path) -> list[str]:
    """Fill *path_dir* with links to :data:`MACHINE_TOOLS`; one finding per missing tool."""
    findings = []
    if path_dir.exists():
        shutil.rmtree(path_dir)
    path_dir.mkdir(parents=True)
    for tool in (*MACHINE_TOOLS, *OPTIONAL_MACHINE_TOOLS):
        found = shutil.which(tool)
        if found is None:
            if tool in MACHINE_TOOLS:
                findings.append(f"{tool} is needed on PATH to run the tests and is missing")
            continue
        (path_dir / tool).symlink_to(found)
    return findings


def main(argv: list[str] | None = None) -> int:
    """Print every finding; exit 1 if there is one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--path-dir",
        type=Path,
        required=True,
        help="directory to fill with links to the machine tools the tests may run by name",
    )
    args = parser.parse_args(argv)
    base = getattr(sys, "_base_executable", sys.executable)
    if sys.prefix != sys.base_prefix and base != sys.executable:
        # Started from inside a virtualenv (an activated .venv): judge its base interpreter.
        os.execv(base, [base, __file__, *sys.argv[1:]])
    findings = importable_project_packages(sys.executable)
    findings += link_machine_tools(args.path_dir)
    for finding in findings:
        print(f"check-machine: {finding}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
