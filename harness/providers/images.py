"""Images that arrive: every image the run needs is pulled once on the host, for the node platform, and
loaded into the kind nodes from a one-platform archive.

Why an archive: kind v0.27.0 imports every image with `ctr --namespace=k8s.io images import
--all-platforms --digests --snapshotter=<snapshotter> -` (kubernetes-sigs/kind tag v0.27.0, commit
6cb9342, pkg/cluster/nodeutils/util.go LoadImageArchive; `kind load docker-image` and
`kind load image-archive` both end there). With Docker's containerd image store (the default on fresh
Docker Engine 29+ installs) `docker save` of a multi-platform image writes the whole index while only
the pulled platform's content exists, and that import fails with "content digest ... not found"
(kubernetes-sigs/kind#3795; kind PR #4247 documents this workaround). `docker save --platform`
(Docker API 1.48+, docs.docker.com/reference/cli/docker/image/save) writes one platform only, which
imports with either store. With the classic (graph driver) store `docker save` already holds only the
pulled platform and `--platform` is not needed.

Docker Hub allows 10 anonymous pulls per hour per IPv4 (design B6): each Docker Hub image pulled here
without a login counts once; the kind nodes themselves then pull nothing from Docker Hub.
Host pulls use the Docker client's own credentials (`$DOCKER_CONFIG/config.json`, default
~/.docker): the harness passes its environment through and never reads a secret, only which
registries have a login (`auths` keys, `credHelpers` keys).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.config import Profile
from harness.kube.tools import ToolError, ToolRunner
from harness.providers.base import PreflightCheck
from harness.render.gpu import KIND_PROBE_IMAGE, PROBE_IMAGE
from harness.render.images import (
    CERTS_DIR,
    DOCKER_HUB,
    RunImage,
    has_digest,
    hosts_toml,
    mirror_ref,
    qualified,
    run_images,
    split_registry,
)

# What kind v0.27.0 runs in each node for every load (tests/fixtures/upstream/kind-load.json pins it).
KIND_IMPORT_ARGV = ("ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests",
                    "--snapshotter=<snapshotter>", "-")
Store = Literal["containerd", "classic"]
# containerd image store: `docker info` reports the driver status pair driver-type =
# io.containerd.snapshotter.v1 (storage driver "overlayfs"); the classic store reports overlay2 & co.
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"
# Docker Hub's login key in config.json `auths` as `docker login` writes it.
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
ANONYMOUS_LIMIT = 10
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class DockerFacts:
    store: Store
    platform: str   # linux/amd64 or linux/arm64: the nodes run on the Docker host's architecture
    version: str


def docker_facts(info: dict[str, Any]) -> DockerFacts:
    """What `docker info --format '{{json .}}'` says about the image store and the node platform."""
    status = info.get("DriverStatus") or []
    containerd = any(isinstance(pair, list) and len(pair) == 2 and pair[1] == CONTAINERD_SNAPSHOTTER
                     for pair in status)
    arch = ARCH.get(str(info.get("Architecture") or "x86_64"), str(info.get("Architecture") or "amd64"))
    return DockerFacts("containerd" if containerd else "classic", f"linux/{arch}",
                       str(info.get("ServerVersion") or "?"))


def docker_config_dir(env: dict[str, str] | None = None) -> Path:
    values = os.environ if env is None else env
    configured = values.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def logged_in_registries(config_dir: Path) -> set[str]:
    """Registries the Docker client has a login for (key names only; no secret is read into the harness).
    An unreadable or missing config means none."""
    try:
        data = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    out: set[str] = set()
    for section in ("auths", "credHelpers"):
        entries = data.get(section)
        if isinstance(entries, dict):
            for key in entries:
                host = re.sub(r"^https?://", "", str(key)).split("/", 1)[0]
                out.add(DOCKER_HUB if str(key) in DOCKER_HUB_KEYS or host in DOCKER_HUB_KEYS else host)
    return out


def local_tag(ref: str) -> str:
    """A digest-pinned image is loaded under a local tag: an archive carries tags, not digests, and kind
    cannot load an image named by digest (kubernetes-sigs/kind#2394)."""
    _, rest = split_registry(ref)
    name, _, digest = rest.partition("@sha256:")
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "pinned"
    return f"harness.local/{repo}:{tag}-{digest[:12]}"


def archive_name(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", ref)[:120] + ".tar"


@dataclass(frozen=True)
class PullPlan:
    image: RunImage
    pull_ref: str      # what `docker pull` asks for (the mirror's copy when a mirror serves the registry)
    load_ref: str      # the name the nodes know it by (the local tag for digest-pinned images)
    docker_hub: bool   # the host pull counts against Docker Hub's limit


def pull_plans(profile: Profile, extra: list[RunImage] | None = None) -> list[PullPlan]:
    mirrors = profile.cluster.registry_mirrors
    plans = []
    probe = qualified(PROBE_IMAGE)
    for image in [*run_images(profile), *(extra or [])]:
        pull = mirror_ref(image.ref, mirrors)
        # The probe pod names KIND_PROBE_IMAGE with imagePullPolicy Never on kind (harness.render.gpu).
        load = KIND_PROBE_IMAGE if image.ref == probe else local_tag(image.ref) if has_digest(image.ref) else image.ref
        plans.append(PullPlan(image, pull, load, split_registry(pull)[0] == DOCKER_HUB))
    return plans


def commands(plans: list[PullPlan], facts: DockerFacts, archive: Path, cluster: str,
             nodes: list[str] | None) -> list[list[str]]:
    """The exact docker and kind commands that bring a group of images into the nodes: a pull each (the
    node platform), one archive (one platform with the containerd store), one `kind load image-archive`."""
    out: list[list[str]] = []
    for plan in plans:
        out.append(["docker", "pull", "--platform", facts.platform, plan.pull_ref])
        if plan.load_ref != plan.pull_ref:
            out.append(["docker", "tag", plan.pull_ref, plan.load_ref])
    save = ["docker", "save"]
    if facts.store == "containerd":
        save += ["--platform", facts.platform]
    out.append([*save, "--output", str(archive), *(p.load_ref for p in plans)])
    load = ["kind", "load", "image-archive", str(archive), "--name", cluster]
    if nodes:
        load += ["--nodes", ",".join(nodes)]
    out.append(load)
    return out


def present_images(listing: str) -> set[str]:
    """Qualified references of the images `docker image ls --digests --format '{{json .}}'` lists."""
    out: set[str] = set()
    for line in listing.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        repo, tag, digest = str(row.get("Repository", "")), str(row.get("Tag", "")), str(row.get("Digest", ""))
        if not repo or repo == "<none>":
            continue
        if tag and tag != "<none>":
            out.add(qualified(f"{repo}:{tag}"))
        if digest.startswith("sha256:"):
            out.add(qualified(f"{repo}@{digest}"))
            if tag and tag != "<none>":
                out.add(qualified(f"{repo}:{tag}@{digest}"))
    return out


def anonymous_pulls(plans: list[PullPlan], present: set[str], logins: set[str]) -> list[PullPlan]:
    """The Docker Hub pulls this run makes without a login (images already on the host are not pulled)."""
    if DOCKER_HUB in logins:
        return []
    return [p for p in plans if p.docker_hub and p.pull_ref not in present]


def image_findings(runner: ToolRunner, profile: Profile, facts: DockerFacts, timeout: float,
                   config_dir: Path | None = None) -> list[PreflightCheck]:
    """The preflight's image lines: Docker's image store, and the anonymous Docker Hub pulls a run needs."""
    out = [PreflightCheck("docker.image-store", True,
                          f"Docker {facts.version} uses the {facts.store} image store; images are saved for "
                          f"{facts.platform} only and loaded with `kind load image-archive`"
                          + (" (docker save --platform needs Docker API 1.48+, Docker 28+)"
                             if facts.store == "containerd" else ""))]
    plans = pull_plans(profile)
    try:
        listing = runner.run("docker", ["image", "ls", "--digests", "--format", "{{json .}}"], timeout=timeout).stdout
    except ToolError:
        listing = ""
    present = present_images(listing)
    logins = logged_in_registries(config_dir or docker_config_dir(runner.env))
    anonymous = anonymous_pulls(plans, present, logins)
    hub = [p for p in plans if p.docker_hub and p.pull_ref not in present]
    if DOCKER_HUB in logins:
        text = f"{len(hub)} Docker Hub pull(s) on the host, with the Docker login found in config.json"
    else:
        text = f"{len(anonymous)} anonymous Docker Hub pull(s) on the host (the limit is {ANONYMOUS_LIMIT} per " \
               f"hour per IPv4); the kind nodes pull nothing from Docker Hub"
    if anonymous:
        text += ("; to stay clear of the limit run `docker login` on the runner, or name a mirror in the "
                 "profile (cluster.registry_mirrors: {docker.io: https://...})")
    out.append(PreflightCheck("docker.pulls", len(anonymous) <= ANONYMOUS_LIMIT, text))
    return out


def mirror_commands(profile: Profile, nodes: list[str]) -> list[tuple[list[str], str]]:
    """(argv, stdin) per node and mirrored registry: containerd's hosts file for the registry, read by the
    config_path the kind config's containerdConfigPatches sets (kind v0.27.0 kind-with-registry.sh)."""
    out = []
    for node in nodes:
        for registry, mirror in sorted(profile.cluster.registry_mirrors.items()):
            folder = f"{CERTS_DIR}/{registry}"
            out.append((["docker", "exec", "-i", node, "sh", "-c",
                         f"mkdir -p {folder} && cat > {folder}/hosts.toml"], hosts_toml(registry, mirror)))
    return out
