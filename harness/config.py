"""The profile: one typed configuration that holds every knob of a run.

A profile is a YAML file (see `profiles/`). It is parsed with a safe loader, validated strictly
(unknown keys are errors, so a typo never passes silently) and then checked across fields. Every
problem becomes one `UsageError` line: ``<file>: <field.path>: <what was expected>``.

Command-line options override profile fields through `apply_overrides`; nothing else in the
harness reads the environment except `KUBECONFIG` and `PROFILE` (documented in the README).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.bounds import profile_problem
from harness.errors import UsageError
from harness.k8s.gpu import GPU_RESOURCE
from harness.k8s.sharing import Sharing
from harness.safeyaml import load_one, read_text

# Kubernetes object names (RFC 1123 label: what Servers, Models, namespaces and pods need).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Label and taint keys: optional DNS-subdomain prefix, then a name segment.
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Capabilities of Seldon's default ServerConfigs (design B1); a Server's extra capabilities add to these.
DEFAULT_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "mlserver": (
        "mlserver", "alibi-detect", "alibi-explain", "huggingface", "lightgbm",
        "mlflow", "python", "sklearn", "spark-mlib", "xgboost",
    ),
    "triton": (
        "triton", "dali", "fil", "onnx", "openvino", "python", "pytorch", "tensorflow", "tensorrt",
    ),
}

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    """Base for every profile section: unknown keys are errors, values are not coerced loosely."""

    # allow_inf_nan=False: `.inf` as a timeout or `.nan` as an SLO would pass every comparison
    # (or none) and surface later as a traceback; every number must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True,
                              allow_inf_nan=False)


def _check_name(value: str, what: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{what} must be a DNS-1123 label (lowercase letters, digits and '-', "
            f"starting and ending alphanumeric, at most 63 characters), got {value!r}"
        )
    return value


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not QUALIFIED_NAME.match(key) or len(key.split("/")[-1]) > 63:
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
        if len(value) > 63 or not LABEL_VALUE.match(value):
            raise ValueError(f"label value {value!r} (key {key!r}) is not a valid Kubernetes label value")
    return labels


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]


class Taint(Strict):
    key: str = "seldon-gpu-srv"
    value: str = "true"
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not QUALIFIED_NAME.match(v):
            raise ValueError(f"taint key {v!r} is not a valid Kubernetes key")
        return v

    def as_k8s(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


class Label(Strict):
    key: str = "pool"
    value: str = "infer-srv"

    @model_validator(mode="after")
    def _valid(self) -> Label:
        _check_labels({self.key: self.value})
        return self


class ControlPlane(Strict):
    count: Literal[1] = 1
    labels: Labels = Field(default_factory=dict)
    cpu: str = "4"
    memory: str = "8Gi"


class CpuWorkers(Strict):
    count: Annotated[int, Field(ge=0, le=20)] = 1
    labels: Labels = Field(default_factory=dict)
    cpu: str = "4"
    memory: str = "16Gi"


class GpuWorkers(Strict):
    """A group of identical GPU workers. Each one gets the GPU taint and the pool label."""

    count: Annotated[int, Field(ge=1, le=16)] = 1
    gpus: Annotated[int, Field(ge=1, le=16)] = 1
    product: str = "NVIDIA-H200"
    memory_mib: Annotated[int, Field(ge=1)] = 143771
    labels: Labels = Field(default_factory=dict)
    cpu: str = "16"
    memory: str = "64Gi"
    # kind only: which host GPUs each worker receives, one list per worker ("all", indices or UUIDs).
    # Empty means: hand out host GPUs 0..N-1 in order, `gpus` per worker.
    host_gpus: list[list[str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _host_gpus(self) -> GpuWorkers:
        if self.host_gpus and len(self.host_gpus) != self.count:
            raise ValueError(
                f"host_gpus must list one entry per GPU worker ({self.count}), got {len(self.host_gpus)}"
            )
        return self


class Nodes(Strict):
    control_plane: ControlPlane = Field(default_factory=ControlPlane)
    cpu_workers: CpuWorkers = Field(default_factory=CpuWorkers)
    gpu_workers: list[GpuWorkers] = Field(default_factory=lambda: [GpuWorkers()])
    # `gpu_workers: auto` (kind with GPU passthrough): the run lays GPU workers out from the host's GPUs
    # (harness/layout.py, docs/real-clusters.md "GPU layout"); profiles write `gpu_workers: auto`, not this.
    gpu_layout: Literal["listed", "auto"] = "listed"

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("gpu_workers") == "auto":
            return {**data, "gpu_workers": [], "gpu_layout": "auto"}
        if isinstance(data, dict) and isinstance(data.get("gpu_workers"), list) and data["gpu_workers"]:
            return {**data, "gpu_layout": "listed"}  # a listed layout (a laid-out copy of an auto profile too)
        return data


class Cluster(Strict):
    provider: Literal["sim", "kind", "existing"] = "sim"
    # kind: cluster names are `<name>-<run id>`; existing: ignored.
    name: Annotated[str, Field(min_length=1, max_length=40)] = "seldon-gpu"
    # kind node image, pinned by digest (Kubernetes 1.31-1.33 work with Seldon 2.10).
    node_image: str = (
        "kindest/node:v1.32.2@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f"
    )
    # existing: kubeconfig file and context; None means $KUBECONFIG / ~/.kube/config and its current context.
    kubeconfig: str | None = None
    context: str | None = None
    # Does the cluster add GPU tolerations automatically (ExtendedResourceToleration)? "detect" asks the
    # API server with a dry-run pod during preflight.
    gpu_toleration_admission: Literal["detect", "yes", "no"] = "detect"
    # kind-cpu: advertise fake `nvidia.com/gpu` capacity by patching node status instead of passthrough.
    fake_gpus: bool = False
    # existing: may tests change nodes (NoExecute taints, evictions, fake capacity)? Off by default on
    # a cluster the harness did not create; when on, only nodes running nothing of anyone else are used.
    destructive: bool = False
    # Host port that kind maps to the seldon-mesh NodePort.
    mesh_host_port: Annotated[int, Field(ge=1024, le=65535)] = 30080
    mesh_node_port: Annotated[int, Field(ge=30000, le=32767)] = 30080
    # Docker images loaded into kind before installs (`kind load docker-image`).
    local_images: list[str] = Field(default_factory=list)
    # Registry mirrors: registry host -> mirror URL (`{docker.io: "https://mirror.gcr.io"}`). kind nodes get
    # containerd hosts files for them and host pulls go through them; on existing clusters the images the
    # run starts are rewritten to the mirror (docs/real-clusters.md, "Images").
    registry_mirrors: dict[str, str] = Field(default_factory=dict)

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, v: dict[str, str]) -> dict[str, str]:
        for registry, url in v.items():
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d+)?", registry):
                raise ValueError(f"expected a registry host like docker.io or nvcr.io as key, got {registry!r}")
            if not re.fullmatch(r"https?://[^\s/@]+(/[^\s@]*)?", url):
                raise ValueError(f"expected the mirror of {registry} as an http(s) URL without credentials, "
                                 f"got {url!r}")
        return v
    nodes: Nodes = Field(default_factory=Nodes)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "cluster name")


class DevicePlugin(Strict):
    install: bool = True
    chart_version: str = "0.17.1"
    namespace: str = "nvidia-device-plugin"
    # envvar (UUIDs in NVIDIA_VISIBLE_DEVICES) or volume-mounts (what nvkind needs).
    device_list_strategy: Literal["envvar", "volume-mounts"] = "volume-mounts"
    # What the deployed plugin runs with where it differs from gpu.sharing, to rehearse a mismatch
    # between the plugin's config and the GPUs (null: follow gpu.sharing).
    mig_strategy: Literal["none", "single", "mixed"] | None = None
    replicas: Annotated[int, Field(ge=1, le=64)] | None = None


class TimeSlicing(Strict):
    """NVIDIA device plugin time-slicing (config `sharing.timeSlicing`, k8s-device-plugin v0.17.1)."""

    # Each GPU (or MIG device) is advertised this many times; pods given replicas of one GPU share it.
    replicas: Annotated[int, Field(ge=2, le=64)] = 2
    # renameByDefault: advertise `nvidia.com/gpu.shared` (and keep the product label without -SHARED).
    rename: bool = False
    # failRequestsGreaterThanOne: a container asking for more than one replica is refused at Allocate.
    fail_requests_greater_than_one: bool = False


class Mig(Strict):
    """MIG as the device plugin and gpu-feature-discovery expose it (`--mig-strategy`)."""

    # single: every GPU of a node carries one MIG profile, advertised as `nvidia.com/gpu`;
    # mixed: each MIG profile is its own resource, `nvidia.com/mig-<profile>`.
    strategy: Literal["single", "mixed"] = "single"
    # The MIG devices configured on each GPU of a GPU worker, by profile ("1g.5gb", "3g.20gb", ...).
    profiles: Annotated[list[Annotated[str, Field(pattern=r"^[1-8]g\.[0-9]+gb(\.me)?$")]],
                        Field(min_length=1, max_length=7)] = Field(default_factory=lambda: ["1g.5gb"])

    @model_validator(mode="after")
    def _uniform(self) -> Mig:
        if self.strategy == "single" and len(set(self.profiles)) > 1:
            raise ValueError("the single MIG strategy needs one MIG profile on every GPU (the device plugin "
                             f"refuses 'more than one MIG device type present on node'), got {self.profiles}")
        return self


class GpuSharing(Strict):
    """How GPUs are shared (docs/gpu-sharing.md): not at all, time-sliced, MIG, or MIG slices time-sliced."""

    time_slicing: TimeSlicing | None = None
    mig: Mig | None = None
    # gke: GKE's own GPU sharing (its driver installer and device plugin, labels cloud.google.com/gke-*),
    # where the harness renders no NVIDIA device plugin config; nvidia: the NVIDIA device plugin's config.
    platform: Literal["nvidia", "gke"] = "nvidia"

    @property
    def mode(self) -> str:
        """none, time-slicing, mig or mig+time-slicing."""
        parts = [p for p, on in (("mig", self.mig), ("time-slicing", self.time_slicing)) if on is not None]
        return "+".join(parts) or "none"

    @model_validator(mode="after")
    def _gke(self) -> GpuSharing:
        if self.platform == "gke" and self.mig is not None and self.mig.strategy == "mixed":
            raise ValueError("GKE exposes MIG partitions as nvidia.com/gpu (one partition size per node pool): "
                             "use mig.strategy single with platform gke")
        if self.platform == "gke" and self.time_slicing is not None and self.time_slicing.rename:
            raise ValueError("GKE time-sharing keeps the resource name nvidia.com/gpu: rename is NVIDIA's option")
        return self


class Gpu(Strict):
    taint: Taint = Field(default_factory=Taint)
    pool_label: Label = Field(default_factory=Label)
    resource_name: str = GPU_RESOURCE
    # The Server capability that GPU models require (matched by the GPU Servers' extraCapabilities).
    capability: str = "model-on-gpu"
    # Image the NVML probe runs in: any image with Python 3.8+ and glibc (the probe ships its own NVML
    # bindings). None: the harness's digest-pinned python:3.12-slim (pre-loaded into kind nodes).
    probe_image: str | None = None
    device_plugin: DevicePlugin = Field(default_factory=DevicePlugin)
    # The GPU-use diagnostic runs a pod that requests no GPU with NVIDIA_VISIBLE_DEVICES=all, which on
    # a runtime that honours it widens that pod's access to every GPU of the node. None: on for the
    # clusters the harness creates (sim, kind), off on existing clusters; true/false decides.
    use_diagnostic: bool | None = None
    # kind GPU workers: NVIDIA container toolkit packages installed inside each node, all at this apt
    # version (nvidia-container-toolkit, -base, libnvidia-container-tools, libnvidia-container1).
    container_toolkit_version: str = Field(default="1.17.8-1", pattern=r"^\d+\.\d+\.\d+(-\d+)?$")
    # RuntimeClass GPU pods (Servers, probes, the device plugin) name: null = none (the NVIDIA runtime is
    # the node's default), a name, or `detect`: kind with GPU passthrough -> `nvidia` (the harness creates
    # it); other clusters -> the RuntimeClass named `nvidia` or with handler `nvidia` if the cluster has
    # one (microk8s, k3s, RKE2 register it), else none.
    runtime_class: str | None = Field(default="detect", pattern=r"^(detect|[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
    # How the GPUs are shared (time-slicing, MIG); see GpuSharing.
    sharing: GpuSharing = Field(default_factory=GpuSharing)

    def shared(self, plugin: bool = False) -> Sharing:
        """`gpu.sharing` as the k8s rules take it; `plugin=True`: what the deployed device plugin runs
        with (gpu.device_plugin.mig_strategy / replicas override it to rehearse a mismatch)."""
        s, ts = self.sharing, self.sharing.time_slicing
        strategy = s.mig.strategy if s.mig is not None else "none"
        replicas = ts.replicas if ts is not None else 1
        if plugin:
            strategy = self.device_plugin.mig_strategy or strategy
            replicas = self.device_plugin.replicas or replicas
        return Sharing(
            mig_strategy=strategy, mig_profiles=tuple(s.mig.profiles) if s.mig is not None else (),
            replicas=replicas, rename=bool(ts and ts.rename),
            fail_requests_greater_than_one=bool(ts and ts.fail_requests_greater_than_one),
            platform=s.platform, base_resource=self.resource_name,
        )


class Seldon(Strict):
    version: str = "2.10.2"
    namespace: str = "seldon-mesh"
    # existing clusters: install Seldon (False means use the one that is there).
    install: bool = True
    helm_repo: str = "https://seldonio.github.io/helm-charts/"
    # Kafka is only for pipelines; without it dataflow crash-loops, so it stays off unless asked for.
    kafka: bool = False
    # Extra Helm values merged over the rendered ones, per chart.
    setup_values: dict[str, Any] = Field(default_factory=dict)
    runtime_values: dict[str, Any] = Field(default_factory=dict)
    # Where the runner reaches the mesh (`http://host:port`), instead of the seldon-mesh Service's
    # LoadBalancer address (existing) or the NodePort mapping (kind). docs/real-clusters.md, "The mesh".
    mesh_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/@]+/?$")

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _check_name(v, "seldon.namespace")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"2\.\d+\.\d+", v):
            raise ValueError(f"expected a Seldon Core 2 version like 2.10.2, got {v!r}")
        return v


class Server(Strict):
    name: str
    server_config: Literal["mlserver", "triton"] = "mlserver"
    replicas: Annotated[int, Field(ge=1, le=16)] = 1
    # GPUs per replica; 0 makes a CPU Server that must stay off the GPU pool.
    gpus: Annotated[int, Field(ge=0, le=16)] = 1
    # How a GPU Server reaches the pool: required node affinity or a nodeSelector.
    placement: Literal["nodeAffinity", "nodeSelector"] = "nodeAffinity"
    # Appended to the ServerConfig's capabilities (Seldon `extraCapabilities`).
    extra_capabilities: list[str] | None = None
    # Container resources for the inference container (requests == limits for GPUs, always).
    cpu: str = "1"
    memory: str = "2Gi"
    # Raw Seldon `podSpec` fields laid over the rendered ones (tolerations, affinity, nodeSelector,
    # runtimeClassName; containers merged by name). For clusters that need more than the knobs
    # above, and for reproducing configuration mistakes on purpose: `lint` checks the result.
    pod_spec: dict[str, Any] | None = None
    # Under the mixed MIG strategy: request `nvidia.com/mig-<profile>` (gpus of them) instead of nvidia.com/gpu.
    mig_profile: str | None = Field(default=None, pattern=r"^[1-8]g\.[0-9]+gb(\.me)?$")
    # Assert that the server's process really holds memory on its GPU once a model is loaded.
    # Default: yes for Triton GPU servers (GPU models), no for MLServer (sklearn runs on the CPU).
    expect_gpu_use: bool | None = None

    @property
    def gpu_use_expected(self) -> bool:
        # Asked for explicitly, it is checked even on a Server without GPUs (which then fails).
        if self.expect_gpu_use is not None:
            return self.expect_gpu_use
        return self.on_gpu and self.server_config == "triton"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "server name")

    @property
    def on_gpu(self) -> bool:
        return self.gpus > 0

    def capabilities(self, gpu_capability: str) -> tuple[str, ...]:
        extra = self.extra_capabilities
        if extra is None:
            extra = [gpu_capability] if self.on_gpu else []
        return DEFAULT_CAPABILITIES[self.server_config] + tuple(extra)

    def extra(self, gpu_capability: str) -> list[str]:
        if self.extra_capabilities is not None:
            return list(self.extra_capabilities)
        return [gpu_capability] if self.on_gpu else []


class Tensor(Strict):
    name: str
    datatype: Literal["FP32", "FP64", "INT32", "INT64", "BYTES", "BOOL"] = "FP32"
    shape: list[NonNegativeInt]
    data: list[Any]

    @model_validator(mode="after")
    def _size(self) -> Tensor:
        size = 1
        for dim in self.shape:
            size *= dim
        if len(self.data) != size:
            raise ValueError(f"data has {len(self.data)} values but shape {self.shape} needs {size}")
        return self


class Model(Strict):
    name: str
    storage_uri: Annotated[str, Field(min_length=1)]
    requirements: list[str] = Field(default_factory=list)
    # Pin to a Server by name (no fallback).
    server: str | None = None
    # Which Server the model is meant to land on; defaults to the pinned server or the one unique
    # server that can serve the requirements.
    expect_server: str | None = None
    memory: str | None = None
    replicas: Annotated[int, Field(ge=1, le=16)] = 1
    input: Tensor | None = None
    # Expected output of `input` (one inference's correctness check).
    expected_output: Tensor | None = None
    # Models with several inputs or outputs (Triton's tfsimple: INPUT0 and INPUT1) list them here
    # instead; `input`/`expected_output` are the one-tensor shorthand. Use one form, not both.
    inputs: list[Tensor] = Field(default_factory=list)
    expected_outputs: list[Tensor] = Field(default_factory=list)
    # Model name as the server reports it (Seldon answers `<model>_<version>`).
    latency: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "model name")

    @model_validator(mode="after")
    def _one_form(self) -> Model:
        if self.input is not None and self.inputs:
            raise ValueError("give either input (one tensor) or inputs (a list), not both")
        if self.expected_output is not None and self.expected_outputs:
            raise ValueError("give either expected_output (one tensor) or expected_outputs (a list), not both")
        return self

    @property
    def request_inputs(self) -> list[Tensor]:
        """Every input tensor of the profile's request ([] when the profile gives none)."""
        return [self.input] if self.input is not None else list(self.inputs)

    @property
    def expected(self) -> list[Tensor]:
        """Every output tensor the request must answer with."""
        return [self.expected_output] if self.expected_output is not None else list(self.expected_outputs)


class Slo(Strict):
    p50_ms: PositiveFloat | None = None
    p95_ms: PositiveFloat | None = None
    p99_ms: PositiveFloat | None = None
    min_throughput_rps: Annotated[float, Field(ge=0)] = 0.0
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0


class LoadSweep(Strict):
    """Capacity at SLO (docs/load.md): a geometric ramp to the first step that misses the model's
    SLO, then bisection, each step one open-loop window, within `budget_s`."""

    start_rate: PositiveFloat = 20.0
    growth: Annotated[float, Field(gt=1, le=10)] = 2.0
    resolution: Annotated[float, Field(gt=0, lt=1)] = 0.05
    budget_s: PositiveFloat = 120.0
    step_s: PositiveFloat = 3.0
    warmup_s: Annotated[float, Field(ge=0)] = 1.0
    min_requests: Annotated[int, Field(ge=0)] = 300
    # The answer is re-measured until it has met the SLO this many times (docs/load.md).
    confirmations: Annotated[int, Field(ge=1, le=10)] = 2


class LoadGenerators(Strict):
    """Where the latency load comes from: the runner's own processes, or generator pods in the cluster
    (one indexed Job off the GPU pool; docs/load.md, "Generators in the cluster")."""

    where: Literal["runner", "cluster"] = "runner"
    pods: Annotated[int, Field(ge=1, le=100)] = 1
    # Per pod, requests == limits (a generator starved of CPU sends late).
    cpu: str = Field(default="1", pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field(default="256Mi", pattern=r"^\d+(Ki|Mi|Gi)?$")
    # From creating the Job to the pods' shared start: scheduling, image pull and interpreter start.
    start_margin_s: PositiveFloat = 60.0
    # None: the image the NVML probe uses (gpu.probe_image or the harness's pinned python image).
    image: str | None = None


class Load(Strict):
    protocol: Literal["http", "grpc"] = "http"
    mode: Literal["open", "closed"] = "open"
    rate: PositiveFloat = 50.0
    poisson: bool = False
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 4
    duration_s: PositiveFloat = 10.0
    warmup_s: Annotated[float, Field(ge=0)] = 2.0
    window_s: PositiveFloat = 5.0
    stability_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.10
    max_trials: Annotated[int, Field(ge=1, le=50)] = 3
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    # One inference request (load engine and the suites' single inferences); default 10 s.
    request_timeout_s: PositiveFloat = 10.0
    # Set to search each model's capacity at its SLO after the fixed-rate measurement.
    sweep: LoadSweep | None = None
    generators: LoadGenerators = Field(default_factory=LoadGenerators)

    @model_validator(mode="after")
    def _generators_speak_http(self) -> Load:
        if self.generators.where == "cluster" and self.protocol != "http":
            raise ValueError("generators.where: cluster: in-cluster generators speak HTTP only (the pods have "
                             "nothing but Python's standard library); set load.protocol: http")
        return self


class Timeouts(Strict):
    """Budgets in seconds for each lifecycle phase and wait (design C: one typed place).

    Each field has one meaning, written above it: what it bounds, its default and why that default.
    A wait that runs past its budget fails naming the last state it saw (harness/kube/wait.py)."""

    # Each provider's preflight probe (tool --version calls, host NVML); default 60 s: local commands.
    preflight_s: PositiveFloat = 60
    # `kind create cluster --wait` and loading images into its nodes; default 600 s: a cold node image
    # pull plus control-plane start on a CI runner.
    cluster_create_s: PositiveFloat = 600
    # The GPU stack: the device-plugin Helm install, the toolkit install in kind nodes and GPU nodes
    # advertising their GPUs; default 600 s: image pulls on every GPU node.
    gpu_stack_s: PositiveFloat = 600
    # Each Seldon Helm chart install (crds, setup, runtime); default 900 s: the runtime pulls several images.
    seldon_install_s: PositiveFloat = 900
    # A Server Ready, counted once its images are on the node (pulls have `image_pull_s`); default 600 s.
    server_ready_s: PositiveFloat = 600
    # A Model ModelReady (artifact download and load); default 600 s: multi-GB model artifacts.
    model_ready_s: PositiveFloat = 600
    # Give-up rule of the Server and probe waits: a pod Unschedulable this long (or a Server whose
    # StatefulSet the operator cannot make) ends the wait naming the cause; default 120 s, enough for
    # a cluster autoscaler to add a node.
    pod_schedule_s: PositiveFloat = 120
    # How long the scheduler may take to decide about one pod (bind it, or mark it Unschedulable);
    # default 60 s: a decision takes milliseconds, the rest is a busy API server.
    scheduling_s: PositiveFloat = 60
    # A bound pod Running (image pull of a small image included); default 300 s.
    pod_start_s: PositiveFloat = 300
    # The seldon-mesh Service getting its LoadBalancer address; default 300 s: cloud load balancers
    # take minutes to provision.
    load_balancer_s: PositiveFloat = 300
    # One NVML probe pod from creation to its printed document (also its activeDeadlineSeconds);
    # default 300 s.
    probe_s: PositiveFloat = 300
    # Image pulls get their own budget: readiness budgets start once the image is on the node
    # (MLServer's images are several GB; a pod's activeDeadlineSeconds would otherwise include the pull).
    # A pod in ErrImagePull/ImagePullBackOff this long also ends the wait for it, naming the image.
    image_pull_s: PositiveFloat = 900
    # A pod that does not tolerate a NoExecute taint evicted (the taint manager acts within seconds);
    # default 120 s.
    eviction_s: PositiveFloat = 120
    # Deleting one object (and waiting until it is gone), or one Helm uninstall; default 300 s:
    # finalizers such as Seldon's model unload.
    delete_s: PositiveFloat = 300
    # Any other external command (docker, helm, kubectl, nvidia-ctk) without a budget of its own;
    # default 120 s.
    subprocess_s: PositiveFloat = 120
    # One Kubernetes API request (not an inference request: that is `load.request_timeout_s`);
    # default 30 s.
    request_s: PositiveFloat = 30


class Report(Strict):
    dir: str = "reports"
    html: bool = True
    junit: bool = True


class Profile(Strict):
    """The whole run. Field docs live in the commented profiles under `profiles/`."""

    name: str = "default"
    cluster: Cluster = Field(default_factory=Cluster)
    gpu: Gpu = Field(default_factory=Gpu)
    seldon: Seldon = Field(default_factory=Seldon)
    servers: list[Server] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    slo: Slo = Field(default_factory=Slo)
    # Per-model SLO overrides by model name.
    model_slos: dict[str, Slo] = Field(default_factory=dict)
    load: Load = Field(default_factory=Load)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    report: Report = Field(default_factory=Report)
    # Where the profile was read from (set by `load_profile`, not by the file).
    source: str = Field(default="<profile>", exclude=True)

    # --- cross-field rules -------------------------------------------------------------
    @model_validator(mode="after")
    def _cross_field(self) -> Profile:
        servers = {s.name: s for s in self.servers}
        if len(servers) != len(self.servers):
            dupes = sorted({s.name for s in self.servers if [x.name for x in self.servers].count(s.name) > 1})
            raise _FieldError("servers", f"server names must be unique, repeated: {', '.join(dupes)}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise _FieldError("models", "model names must be unique")
        if self.cluster.provider == "existing" and self.cluster.fake_gpus and not self.cluster.destructive:
            raise _FieldError("cluster.fake_gpus", "patches the capacity of nodes of a cluster the harness did not "
                              "create: set cluster.destructive: true as well to allow it")
        for i, server in enumerate(self.servers):
            if server.mig_profile is not None and (self.gpu.sharing.mig is None
                                                   or self.gpu.sharing.mig.strategy != "mixed"):
                raise _FieldError(f"servers[{i}].mig_profile", "requests nvidia.com/mig-<profile>, which only "
                                  "the mixed MIG strategy advertises: set gpu.sharing.mig.strategy: mixed")
        gpu_nodes = sum(g.count for g in self.cluster.nodes.gpu_workers)
        if self.cluster.nodes.gpu_layout == "auto" and (self.cluster.provider != "kind" or self.cluster.fake_gpus):
            raise _FieldError("cluster.nodes.gpu_workers", "auto lays GPU workers out from the host's GPUs: only for "
                              "the kind provider with GPU passthrough (no fake_gpus); list the GPU workers instead")
        if self.cluster.provider in ("sim", "kind") and self.cluster.nodes.gpu_layout == "listed":
            for i, server in enumerate(self.servers):
                if server.on_gpu and gpu_nodes == 0:
                    raise _FieldError(
                        f"servers[{i}].gpus",
                        f"server {server.name!r} asks for GPUs but cluster.nodes.gpu_workers has no nodes",
                    )
                sharing = self.gpu.shared()
                resource = sharing.resource_for(server.mig_profile)
                offered = {r for g in self.cluster.nodes.gpu_workers for r in sharing.node_capacity(g.gpus)}
                if server.on_gpu and resource not in offered:
                    raise _FieldError(
                        f"servers[{i}].mig_profile",
                        f"server {server.name!r} asks for {resource}, which no GPU worker offers "
                        f"(they offer {', '.join(sorted(offered)) or 'nothing'}; gpu.sharing {sharing.mode})",
                    )
                max_gpus = max((sharing.node_capacity(g.gpus).get(resource, 0)
                                for g in self.cluster.nodes.gpu_workers), default=0)
                if server.gpus > max_gpus:
                    raise _FieldError(
                        f"servers[{i}].gpus",
                        f"server {server.name!r} asks for {server.gpus} {resource} per replica "
                        f"but no GPU worker has more than {max_gpus}",
                    )
        for i, model in enumerate(self.models):
            if model.server is not None and model.server not in servers:
                raise _FieldError(
                    f"models[{i}].server",
                    f"model {model.name!r} is pinned to server {model.server!r}, "
                    f"which is not in servers ({', '.join(servers) or 'none'})",
                )
            if model.expect_server is not None and model.expect_server not in servers:
                raise _FieldError(
                    f"models[{i}].expect_server",
                    f"expected a server named in servers ({', '.join(servers) or 'none'}), got {model.expect_server!r}",
                )
            if model.server is None and self.servers:
                able = self.servers_for(model)
                if not able:
                    raise _FieldError(
                        f"models[{i}].requirements",
                        f"no server offers all of {model.requirements} for model {model.name!r}",
                    )
            if model.expected and not model.request_inputs:
                field = "expected_output" if model.expected_output is not None else "expected_outputs"
                raise _FieldError(f"models[{i}].{field}", "needs models[].input (or inputs) as well")
        for name in self.model_slos:
            if name not in names:
                raise _FieldError(f"model_slos.{name}", f"expected a model name from models, got {name!r}")
        return self

    # --- derived views -----------------------------------------------------------------
    def server(self, name: str) -> Server:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def servers_for(self, model: Model) -> list[Server]:
        """Servers whose capabilities include every requirement of `model` (Seldon's matching)."""
        if model.server is not None:
            return [self.server(model.server)]
        needed = set(model.requirements)
        return [s for s in self.servers if needed <= set(s.capabilities(self.gpu.capability))]

    def intended_server(self, model: Model) -> str | None:
        """Where the model should land: explicit expectation, the pin, or the only able server."""
        if model.expect_server:
            return model.expect_server
        if model.server:
            return model.server
        able = self.servers_for(model)
        return able[0].name if len(able) == 1 else None

    def slo_for(self, model: str) -> Slo:
        return self.model_slos.get(model, self.slo)

    @property
    def gpu_servers(self) -> list[Server]:
        return [s for s in self.servers if s.on_gpu]

    @property
    def simulated(self) -> bool:
        return self.cluster.provider == "sim"


class _FieldError(ValueError):
    """A cross-field problem that knows its field path (pydantic would otherwise report the root)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _describe(error: Any) -> tuple[str, str]:
    """Turn one pydantic error into (field path, expectation) for a one-line message."""
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error["loc"]).replace(".[", "[")
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "extra_forbidden":
        return loc, "unknown key (check the spelling against the commented profiles in profiles/)"
    if kind == "missing":
        return loc, "required field is missing"
    if kind == "value_error":
        exc = ctx.get("error")
        if isinstance(exc, _FieldError):
            return exc.path, exc.message
        return loc, str(exc) if exc is not None else error["msg"]
    if kind == "literal_error":
        return loc, f"expected one of {ctx.get('expected')}, got {got!r}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return loc, f"{error['msg'].lower()}, got {got!r}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return loc, f"{error['msg'].lower()}, got {type(got).__name__} {got!r}"
    return loc, f"{error['msg']}, got {got!r}"


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    """Validate already-parsed YAML data. Raises `UsageError` with one line on any problem."""
    if data is None:
        raise UsageError(f"{source}: the profile is empty; expected a mapping of sections (cluster, servers, ...)")
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping at the top level, got a {type(data).__name__}")
    try:
        profile = Profile.model_validate({**data, "source": source} if "source" not in data else data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path, expectation = _describe(first)
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UsageError(f"{source}: {path or '<top>'}: {expectation}{suffix}") from None
    # Finite but huge numbers would run away at run time: each has a documented ceiling.
    problem = profile_problem(profile.model_dump(exclude={"source"}))
    if problem:
        raise UsageError(f"{source}: {problem}")
    return profile


def load_profile(path: str | Path) -> Profile:
    """Read, parse (safe loader only) and validate a profile file."""
    p = Path(path)
    # Strict and bounded: a regular UTF-8 file of bounded size, no duplicate keys, no alias bombs.
    data = load_one(read_text(p, "profile file"), str(p))
    if isinstance(data, dict) and "source" in data:
        raise UsageError(f"{p}: source: unknown key (check the spelling against the commented profiles in profiles/)")
    return parse_profile(data, str(p))


def apply_overrides(profile: Profile, **overrides: Any) -> Profile:
    """Return a copy with command-line overrides applied (None means: keep the profile's value).

    Supported: kubeconfig, context, report_dir. The copy is validated again.
    """
    data = profile.model_dump(exclude={"source"})
    if overrides.get("kubeconfig") is not None:
        data["cluster"]["kubeconfig"] = str(overrides["kubeconfig"])
    if overrides.get("context") is not None:
        data["cluster"]["context"] = overrides["context"]
    if overrides.get("report_dir") is not None:
        data["report"]["dir"] = str(overrides["report_dir"])
    unknown = set(overrides) - {"kubeconfig", "context", "report_dir"}
    if unknown:
        raise UsageError(f"unknown override(s): {', '.join(sorted(unknown))}")
    return parse_profile({**data, "source": profile.source}, profile.source)
