"""Build the operator image from the repository's Dockerfile, on the harness's engine.

BuildKit (the engine's own; no frontend image is pulled) with ``--network host``: pip in
the build reaches PyPI through the machine's network. The machine's CA bundle goes in as
the build secret ``ca-bundle``, so pip trusts what the machine trusts (a TLS-inspecting
proxy's CA, say); a secret is in no layer of the image.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from harness.base_image import default_base, ensure_base
from harness.binaries import find_repo_root
from harness.engine import DockerEngine

OPERATOR_IMAGE = "session-lease-operator:dev"
"""The image ``make image`` builds, and the one the tests run."""


@dataclass(frozen=True)
class BuiltImage:
    """An image the build left in the engine."""

    tag: str
    image_id: str
    size_bytes: int
    base: str
    seconds: float

    def summary(self) -> str:
        """One line: what was built, on what, how big, how long it took."""
        return (
            f"built {self.tag} ({self.image_id[:19]}, {self.size_bytes / 1e6:.0f} MB)"
            f" on {self.base} in {self.seconds:.1f}s"
        )


def build_operator_image(
    engine: DockerEngine,
    tag: str = OPERATOR_IMAGE,
    base_image: str | None = None,
    repo_root: Path | None = None,
) -> BuiltImage:
    """Build the Dockerfile as *tag* on *base_image* (default: the Debian base made here),
    showing the build's progress."""
    started = time.monotonic()
    repo = find_repo_root(repo_root)
    base = base_image or ensure_base(engine, default_base(repo))
    argv = ["build", "--progress=plain", "--network=host", f"--build-arg=BASE_IMAGE={base}"]
    bundle = machine_ca_bundle()
    if bundle is not None:
        argv.append(f"--secret=id=ca-bundle,src={bundle}")
    trusted = f"; pip trusts the CA bundle {bundle}" if bundle else ""
    print(f"building {tag} on {base}{trusted}", flush=True)
    engine.docker_shown(*argv, f"--tag={tag}", str(repo))
    # The image this tag named before, if any: nothing refers to it any more.
    engine.docker("image", "prune", "--force")
    found = engine.docker("image", "inspect", "--format={{.Id}} {{.Size}}", tag).stdout.split()
    return BuiltImage(tag, found[0], int(found[1]), base, time.monotonic() - started)


def machine_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip and OpenSSL trust, if there is a file of it."""
    paths = ssl.get_default_verify_paths()  # SSL_CERT_FILE, else OpenSSL's own file
    candidates = [
        os.environ.get("PIP_CERT"),
        paths.cafile,
        paths.openssl_cafile,
        "/etc/ssl/certs/ca-certificates.crt",  # Debian's, which OpenSSL reads as a directory
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
