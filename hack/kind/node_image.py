"""Build a kind node image without a registry: ``make kind-node-image``.

    python hack/kind/node_image.py --tag IMAGE [--force]

``kind build node-image`` cannot run without a registry: it pulls its base image
(``kindest/base``) and then, inside the build container, ``ctr content fetch``-es etcd,
CoreDNS, pause, kindnetd and the local-path provisioner. This script does the same build
from what this machine can reach, on the Docker engine ``docker`` talks to (DOCKER_HOST):

1. the base: ``debootstrap`` Debian bookworm with systemd, Debian's containerd, runc and
   CNI plugins, plus kind's own files from its module source (``images/base/files``),
   arranged as kind's ``images/base/Dockerfile`` does, ``docker import``-ed;
2. the binaries: kubelet, kubectl and the control plane's from the harness's cache
   (``make controlplane node``); kubeadm, etcd and CoreDNS at the versions kubeadm asks
   for, and crictl at kind's, built from the Go module proxy into
   ``~/.cache/session-lease-operator/kind/bin``; pause from ``hack/node/pause.c``;
3. the images kubeadm lists, each its binary on the base, loaded into the node's
   containerd as kind does (``ctr images import --no-unpack``), then ``docker commit``.

There is no kindnetd (its source is in no module the proxy serves): the image carries a
bridge CNI configuration instead, so a cluster on it has one node and kind's default CNI
off (``kind_config.py --no-default-cni``). No local-path provisioner either.
As root (debootstrap, chroot). docs/decisions/0005-local-control-plane.md has the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.binaries import project_cache, toolchain  # noqa: E402

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# kind's images/base/Dockerfile installs these; Debian's containerd, runc and CNI plugins
# stand in for the ones it builds from source.
PACKAGES = (
    "systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,"
    "libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,e2fsprogs,fuse-overlayfs,"
    "containerd,runc,containernetworking-plugins"
)
# What kind's Dockerfile does to the packages, in the root filesystem.
ARRANGE = r"""
set -eu
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo ReadKMsg=no >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
ln -sf /usr/bin/containerd /usr/local/bin/containerd
mkdir -p /opt/cni/bin /etc/kubernetes/manifests /etc/cni/net.d /kind/manifests
for plugin in /usr/lib/cni/*; do ln -sf "$plugin" /opt/cni/bin/; done
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer | length] |=
  . + {"path": "/kind/bin/mount-product-files.sh"}' | jq 'del(.process.rlimits)' \
  > /etc/containerd/cri-base.json
"""
# Lowering an oom_score_adj needs CAP_SYS_RESOURCE, which some machines' root lacks (this
# project's CI among them); with it, neither setting changes anything.
CONTAINERD_DROP_IN = "[Service]\nOOMScoreAdjust=\n"
BRIDGE_CNI = {
    "cniVersion": "0.4.0",
    "name": "kind-local",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "kind0",
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.244.0.0/16"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
ENTRYPOINT = 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'
GO_ENV = {**os.environ, "PATH": f"/usr/local/go/bin:{os.environ.get('PATH', '')}"}


def run(*argv: str | Path, cwd: Path | None = None, capture: bool = False) -> str:
    """Run *argv*, failing loudly; its output when *capture*."""
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=GO_ENV, text=True, check=False,
        stdout=subprocess.PIPE if capture else None,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, argv))}")
    return result.stdout or ""


def has_image(tag: str) -> bool:
    """Whether the engine has *tag*."""
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return found.returncode == 0


def kind_source() -> Path:
    """The pinned kind module's source, from the Go module cache."""
    go_mod = (REPO / "hack/tools/kind/go.mod").read_text()
    version = re.search(r"sigs\.k8s\.io/kind (v\S+)", go_mod)
    assert version, "hack/tools/kind/go.mod pins no sigs.k8s.io/kind"
    out = run("go", "mod", "download", "-json", f"sigs.k8s.io/kind@{version[1]}", capture=True)
    return Path(json.loads(out)["Dir"])


def go_build(out: Path, package: str, module_dir: Path | None = None, ldflags: str = "") -> Path:
    """``go build`` (or ``go install`` of a module version) into *out*, once."""
    if out.is_file():
        return out
    print(f"building {out.name} from the Go module proxy", flush=True)
    with tempfile.TemporaryDirectory() as gobin:
        if module_dir is None:
            env_gobin = ["env", f"GOBIN={gobin}"]
            run(*env_gobin, "go", "install", "-trimpath", f"-ldflags=-s -w {ldflags}", package)
            shutil.move(str(next(Path(gobin).iterdir())), out)
        else:
            run("go", "build", "-trimpath", f"-ldflags=-s -w {ldflags}", "-o", out, package,
                cwd=module_dir)  # fmt: skip
    return out


def build_kubeadm(bin_dir: Path, kube_version: str) -> Path:
    """kubeadm from the harness's wrapper module of k8s.io/kubernetes, plus a main."""
    out = bin_dir / f"kubeadm-{kube_version}"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as scratch:
        module = Path(scratch) / "kubernetes"
        shutil.copytree(REPO / "hack/controlplane/kubernetes", module)
        (module / "kubeadm").mkdir()
        (module / "kubeadm/main.go").write_text(
            'package main\n\nimport (\n\t"k8s.io/kubernetes/cmd/kubeadm/app"\n'
            '\tutilerrors "k8s.io/kubernetes/cmd/kubeadm/app/util/errors"\n)\n\n'
            "func main() { utilerrors.HandleError(app.Run()) }\n"
        )
        run("go", "mod", "tidy", cwd=module)
        major, minor = kube_version.removeprefix("v").split(".")[:2]
        pkg = "k8s.io/component-base/version"
        flags = (
            f"-X {pkg}.gitVersion={kube_version} -X {pkg}.gitMajor={major}"
            f" -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        )
        return go_build(out, "./kubeadm", module, flags)


def build_etcd(bin_dir: Path, version: str) -> Path:
    """etcd *version* (kubeadm's), from a scratch module like hack/controlplane/etcd."""
    out = bin_dir / f"etcd-{version}"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as scratch:
        module = Path(scratch)
        shutil.copy(REPO / "hack/controlplane/etcd/main.go", module)
        (module / "go.mod").write_text("module kindnode/etcd\n\ngo 1.26.0\n")
        run("go", "get", f"go.etcd.io/etcd/server/v3@{version}", cwd=module)
        run("go", "mod", "tidy", cwd=module)
        return go_build(out, ".", module)


def make_base(tag: str, kind_files: Path, work: Path) -> None:
    """The kind base image, from debootstrap and kind's files."""
    rootfs = work / "rootfs"
    print(f"debootstrap {SUITE} with systemd and containerd (a few minutes)", flush=True)
    run("debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, rootfs, MIRROR)
    shutil.copytree(kind_files / "usr/local/bin", rootfs / "usr/local/bin", dirs_exist_ok=True)
    shutil.copytree(kind_files / "kind", rootfs / "kind", dirs_exist_ok=True)
    shutil.copytree(kind_files / "etc", rootfs / "etc", dirs_exist_ok=True)
    set_modes(kind_files, rootfs)
    drop_in = rootfs / "etc/systemd/system/containerd.service.d/10-oom.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text(CONTAINERD_DROP_IN)
    config = rootfs / "etc/containerd/config.toml"
    restricted = "restrict_oom_score_adj = true"
    config.write_text(config.read_text().replace("restrict_oom_score_adj = false", restricted))
    (rootfs / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/cni/net.d/10-kind-local.conflist").write_text(json.dumps(BRIDGE_CNI))
    run("chroot", rootfs, "/bin/sh", "-c", ARRANGE)
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).write_text("")
    for name in ("usr/share/man", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / name, ignore_errors=True)
    archive = work / "base.tar"
    run("tar", "--create", f"--file={archive}", "--numeric-owner", f"--directory={rootfs}",
        "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", ".")  # fmt: skip
    run("docker", "import", "--change=ENV container=docker", f"--change={ENTRYPOINT}",
        "--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        archive, tag)  # fmt: skip


def set_modes(kind_files: Path, rootfs: Path) -> None:
    """The modes kind's Dockerfile gives its files (the module cache has them read-only)."""
    for copied in kind_files.rglob("*"):
        target = rootfs / copied.relative_to(kind_files)
        if not target.exists():  # not copied (LICENSES)
            continue
        executable = copied.is_dir() or copied.parent.name == "bin"
        target.chmod(0o755 if executable else 0o644)


def make_component(tag: str, base: str, binary: Path, name: str) -> None:
    """*tag*: *binary* as /usr/local/bin/*name* on the base (the binaries link glibc)."""
    if has_image(tag):
        return
    container = run("docker", "create", "--entrypoint=/bin/true", base, capture=True).strip()
    run("docker", "cp", binary, f"{container}:/usr/local/bin/{name}")
    run("docker", "commit", f'--change=ENTRYPOINT ["/usr/local/bin/{name}"]', "--change=CMD []",
        container, tag)  # fmt: skip
    run("docker", "rm", container, capture=True)


def make_pause(tag: str, work: Path) -> None:
    """*tag*: hack/node/pause.c, static, alone in its image."""
    run("gcc", "-static", "-Os", "-o", work / "pause", REPO / "hack/node/pause.c")
    run("tar", "--create", f"--file={work / 'pause.tar'}", f"--directory={work}", "pause")
    run("docker", "import", '--change=ENTRYPOINT ["/pause"]', work / "pause.tar", tag)


def kind_manifest(source: Path, which: str) -> str:
    """kind's default CNI or storage manifest: a Go constant of its node-image build."""
    text = (source / f"pkg/build/nodeimage/const_{which}.go").read_text()
    constants = dict(re.findall(r'const (\w+) = "([^"]*)"', text))
    text = re.sub(r"` \+ (\w+) \+ `", lambda match: constants[match[1]], text)
    name = {"cni": "defaultCNIManifest", "storage": "defaultStorageManifest"}[which]
    body = re.search(rf"const {name} = `(.*?)`\n", text, re.S)
    assert body, f"no {name} in kind's source"
    return body[1]


def assemble(tag: str, base: str, binaries: list[Path], images: list[str], source: Path,
             kube_version: str, work: Path) -> None:  # fmt: skip
    """What ``kind build node-image`` does after its pulls: binaries, version, manifests,
    images in containerd, ``docker commit``."""
    run("docker", "save", f"--output={work / 'images.tar'}", *images)
    for which in ("cni", "storage"):
        (work / f"default-{which}.yaml").write_text(kind_manifest(source, which))
    build = f"kind-node-build-{os.getpid()}"
    run("docker", "run", "-d", "--entrypoint=sleep", f"--name={build}",
        "--security-opt=seccomp=unconfined", base, "infinity", capture=True)  # fmt: skip
    try:
        for binary in binaries:
            name = binary.name.split("-v")[0]
            folder = "/usr/local/bin" if name == "crictl" else "/usr/bin"
            run("docker", "cp", binary, f"{build}:{folder}/{name}")
        for which in ("cni", "storage"):
            run("docker", "cp", work / f"default-{which}.yaml", f"{build}:/kind/manifests/")
        run("docker", "cp", work / "images.tar", f"{build}:/images.tar")
        script = (
            f"printf {kube_version} > /kind/version; chown root:root /usr/bin/kube*;"
            " (containerd > /dev/null 2>&1 &);"
            " for i in $(seq 50); do"
            " [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done;"
            " ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned"
            " --all-platforms --no-unpack --digests /images.tar && rm /images.tar;"
            " pkill containerd; sleep 1"
        )
        run("docker", "exec", "--privileged", build, "bash", "-euc", script)
        run("docker", "commit", f"--change={ENTRYPOINT}", "--change=CMD []", build, tag,
            capture=True)  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", build], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="the node image's name")
    parser.add_argument("--force", action="store_true", help="build it even if the engine has it")
    args = parser.parse_args(argv)
    if has_image(args.tag) and not args.force:
        print(f"{args.tag} is there (--force builds it anew)")
        return 0
    started = time.monotonic()
    chain = toolchain(repo_root=REPO)
    version = chain.kube_version
    bin_dir = project_cache() / "kind" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = kind_source()
    kubeadm = build_kubeadm(bin_dir, version)
    wanted = run(kubeadm, "config", "images", "list", f"--kubernetes-version={version}",
                 capture=True).split()  # fmt: skip
    etcd_tag = next(image for image in wanted if "/etcd:" in image)
    coredns_tag = next(image for image in wanted if "/coredns:" in image)
    etcd = build_etcd(bin_dir, "v" + etcd_tag.split(":")[1].split("-")[0])
    coredns_version = coredns_tag.split(":")[1]
    coredns = go_build(bin_dir / f"coredns-{coredns_version}",
                       f"github.com/coredns/coredns@{coredns_version}")  # fmt: skip
    dockerfile = (source / "images/base/Dockerfile").read_text()
    crictl_version = re.search(r'ARG CRICTL_VERSION="(v[^"]+)"', dockerfile)
    assert crictl_version, "kind's base Dockerfile names no crictl version"
    crictl = go_build(bin_dir / f"crictl-{crictl_version[1]}",
                      f"sigs.k8s.io/cri-tools/cmd/crictl@{crictl_version[1]}")  # fmt: skip
    containerd_config = (source / "images/base/files/etc/containerd/config.toml").read_text()
    pause_tag = re.search(r'sandbox_image = "([^"]+)"', containerd_config)
    assert pause_tag, "kind's containerd configuration names no sandbox image"
    base = f"{args.tag.split(':')[0]}-base:{SUITE}"
    with tempfile.TemporaryDirectory(prefix="kind-node-", dir=bin_dir.parent) as scratch:
        work = Path(scratch)
        if not has_image(base):
            make_base(base, source / "images/base/files", work)
        components = {f"registry.k8s.io/{name}:{version}": (chain.kube_dir / name, name)
                      for name in ("kube-apiserver", "kube-controller-manager",
                                   "kube-scheduler", "kube-proxy")}  # fmt: skip
        components[etcd_tag] = (etcd, "etcd")
        components[coredns_tag] = (coredns, "coredns")
        for image, (binary, name) in components.items():
            make_component(image, base, binary, name)
        make_pause(pause_tag[1], work)
        assemble(args.tag, base, [kubeadm, chain.kubelet, chain.kubectl, crictl],
                 [*components, pause_tag[1]], source, version, work)  # fmt: skip
    size = run("docker", "image", "inspect", "--format={{.Size}}", args.tag, capture=True)
    print(f"built {args.tag} ({int(size) / 1e9:.2f} GB) in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
