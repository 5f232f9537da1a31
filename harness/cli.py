"""`python -m harness`: the command line.

The parser lives here; each subcommand's work lives in its own module and is imported only when
that subcommand runs, so `--help` stays fast and a broken optional dependency of one command never
breaks the others. Every handler returns an exit code. Bad input raises `UsageError`, which becomes
one line on stderr and exit code 2: never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from harness.bounds import flag_problem
from harness.errors import UsageError
from harness.heap import freeze_startup_heap
from harness.redact import redacting

# subcommand -> "module:function"; the function takes the parsed namespace and returns an exit code.
HANDLERS: dict[str, str] = {
    "render": "harness.commands.render:run_render",
    "lint": "harness.commands.lint:run_lint",
    "sim up": "harness.commands.sim:run_sim_up",
    "load": "harness.commands.load:run_load",
    "gate": "harness.commands.report:run_gate",
    "report": "harness.commands.report:run_report",
    "cleanup": "harness.commands.cleanup:run_cleanup_command",
    "load --in-cluster": "harness.commands.load_cluster:run_load_in_cluster",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _finite(text: str) -> float:
    """float() accepts 'inf' and 'nan'; a duration or rate of either only fails later, as a traceback."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _percent(text: str) -> float:
    raw = text.strip()
    scale = 100.0 if raw.endswith("%") else 1.0
    try:
        value = float(raw.rstrip("%")) / scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction like 0.1 or a percentage like 10%, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative bound, got {text!r}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seldon-gpu-harness")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m harness",
        description="End-to-end tests for GPU model serving with Seldon Core 2 on dedicated GPU nodes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    render = sub.add_parser("render", help="write every manifest a run would apply")
    render.add_argument("--profile", required=True, help="profile YAML file")
    render.add_argument("--out", required=True, help="output directory")

    lint = sub.add_parser("lint", help="static checks of the dedicated-node configuration")
    lint.add_argument("--profile", help="profile YAML file (its rendered manifests are linted)")
    lint.add_argument("--cluster", action="store_true", help="also compare the profile with a live cluster's nodes")
    lint.add_argument("--kubeconfig", help="kubeconfig for --cluster (default: $KUBECONFIG)")
    lint.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    lint.add_argument("manifests", nargs="*", metavar="MANIFEST", help="YAML manifests to lint")

    sim = sub.add_parser("sim", help="the simulated cluster")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", parser_class=_Parser)
    sim_sub.required = True
    up = sim_sub.add_parser("up", help="run the simulated cluster in the foreground until stopped")
    up.add_argument("--profile", default="profiles/sim.yaml", help="profile YAML file (default: %(default)s)")
    up.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    up.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (default: a free one)")
    up.add_argument("--no-mlserver", action="store_true", help="do not start MLServer processes (no data plane)")
    up.add_argument("--no-mesh-ingress", action="store_true",
                    help="the seldon-mesh Service gets no LoadBalancer address (a cluster without a load balancer: "
                         "the harness then reaches the mesh through a port-forward tunnel)")
    up.add_argument("--deploy", action="store_true",
                    help="deploy the profile's Servers and Models, then print the mesh endpoint and a `load` command")

    load = sub.add_parser("load", help="the latency engine against any Open Inference Protocol endpoint")
    load.add_argument("--endpoint", default=None,
                      help="base URL (http://host:port) or host:port for gRPC; required unless --in-cluster "
                           "(default there: the mesh's Service, "
                           "http://seldon-mesh.<seldon namespace>.svc.cluster.local:80)")
    load.add_argument("--model", required=True, help="model name")
    load.add_argument("--protocol", choices=["http", "grpc"], default="http")
    mode = load.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=_positive_int, help="closed loop with N requests in flight")
    mode.add_argument("--rate", type=_positive_float, help="open loop at R requests per second")
    mode.add_argument("--sweep", action="store_true",
                      help="find the highest open-loop rate that meets the --slo-* limits")
    load.add_argument("--poisson", action="store_true", help="open loop with exponential gaps (needs --rate)")
    load.add_argument("--duration", type=_positive_float, default=None,
                      help="measured seconds per trial (with --sweep: per step, default 3)")
    load.add_argument("--warmup", type=_non_negative_float, default=2.0, help="seconds excluded before measuring")
    load.add_argument("--window", type=_positive_float, default=None, help="stability window seconds")
    load.add_argument("--tolerance", type=_percent, default=0.10, help="stability tolerance (default 10%%)")
    load.add_argument("--max-trials", type=_positive_int, default=1, help="trials until stable (default 1)")
    load.add_argument("--workers", type=_positive_int, default=None, help="worker processes (default: as needed)")
    load.add_argument("--input", help="JSON file with the Open Inference Protocol inputs (default: iris [1,4] FP32)")
    load.add_argument("--timeout", type=_positive_float, default=10.0, help="per-request timeout seconds")
    load.add_argument("--engine", choices=["harness", "perf_analyzer"], default="harness")
    load.add_argument("--json", required=True, help="write the JSON result here")
    load.add_argument("--expected-output", metavar="FILE",
                      help="JSON file with the expected 'outputs' [{name, data}] for --input (checked on a sample)")
    load.add_argument("--check-every", type=_positive_int, default=10,
                      help="compare every Nth answer with --expected-output (default 10)")
    load.add_argument("--slo-p50-ms", type=_positive_float, default=None, help="SLO: p50 latency limit (ms)")
    load.add_argument("--slo-p95-ms", type=_positive_float, default=None, help="SLO: p95 latency limit (ms)")
    load.add_argument("--slo-p99-ms", type=_positive_float, default=None, help="SLO: p99 latency limit (ms)")
    load.add_argument("--slo-max-error-rate", type=_percent, default=0.0,
                      help="SLO: highest error rate (default 0); a run above it exits 1")
    load.add_argument("--sweep-budget", type=_positive_float, default=120.0,
                      help="--sweep: time budget in seconds (default 120)")
    load.add_argument("--sweep-start-rate", type=_positive_float, default=None,
                      help="--sweep: first offered rate in req/s (default 20)")
    load.add_argument("--sweep-resolution", type=_percent, default=None,
                      help="--sweep: stop bisecting when the failing rate is within this fraction above the "
                           "passing one (default 0.05: 5%%); coarser is fewer steps")
    load.add_argument("--in-cluster", action="store_true",
                      help="generate the load from pods of one indexed Job in the cluster (HTTP; docs/load.md)")
    load.add_argument("--pods", type=_positive_int, default=None,
                      help="--in-cluster: generator pods (default: the profile's load.generators.pods, else 1)")
    load.add_argument("--kubeconfig", default=None,
                      help="--in-cluster: kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    load.add_argument("--context", default=None, help="--in-cluster: kubeconfig context")
    load.add_argument("--profile", default=None,
                      help="--in-cluster: profile for the Seldon namespace, generator resources, image and timeouts")
    load.add_argument("--image", default=None, help="--in-cluster: generator image (default: the NVML probe's)")
    load.add_argument("--start-margin", type=_positive_float, default=None,
                      help="--in-cluster: seconds from creating the Job to the pods' shared start (default 60)")

    gate = sub.add_parser("gate", help="release verdict: exit 0 pass, 1 fail, 2 unusable input")
    gate.add_argument("--report", required=True, help="report.json of the run")
    gate.add_argument("--baseline", help="report.json of the baseline run")
    gate.add_argument("--max-regression", type=_percent, default=0.10, help="allowed latency regression (default 10%%)")
    gate.add_argument("--min-change-ms", type=_non_negative_float, default=0.5,
                      help="a percentile must also grow by more than this many ms to regress (default 0.5)")
    gate.add_argument("--max-capacity-drop", type=_percent, default=0.10,
                      help="allowed drop of capacity at SLO against the baseline (default 10%%)")
    gate.add_argument("--allow-simulated", action="store_true", help="accept a report from the simulated cluster")
    gate.add_argument("--allow-skip", action="append", metavar="SUITE", default=None,
                      help="accept skipped checks of this suite (repeatable; '*' for all)")
    gate.add_argument("--allow-list", metavar="FILE", default=None,
                      help="reviewed allow-list of skips per profile, with reasons (allowed-skips.yaml)")
    gate.add_argument("--require-signature", action="store_true",
                      help="refuse a report without a valid signature (REPORT.sig, HMAC-SHA256 with the run's key)")
    gate.add_argument("--key-file", metavar="FILE", default=None,
                      help="signing key (default: $HARNESS_REPORT_KEY_FILE, then $HARNESS_REPORT_KEY)")

    cleanup = sub.add_parser("cleanup", help="undo what dead runs left: node changes, namespaces, Servers, Models")
    cleanup.add_argument("--profile", required=True, help="profile YAML file (cluster, Seldon namespace, timeouts)")
    cleanup.add_argument("--kubeconfig", help="kubeconfig (default: the profile's, then $KUBECONFIG)")
    cleanup.add_argument("--context", help="kubeconfig context (default: the profile's, then the current one)")
    cleanup.add_argument("--run-id", help="clean this run even if it cannot be shown dead (default: every dead run)")

    report = sub.add_parser("report", help="render a report.json again as HTML (and JUnit)")
    report.add_argument("--report", required=True, help="report.json")
    report.add_argument("--html", help="write the HTML report here")
    report.add_argument("--junit", help="write JUnit XML here")
    return parser


def _resolve(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = HANDLERS[command].split(":")
    module = importlib.import_module(module_name)
    handler: Callable[[argparse.Namespace], int] = getattr(module, func_name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    # Every line the CLI prints passes through redaction: error lines quote kubeconfig problems,
    # exec-plugin stderr, cluster objects and URIs (`harness.redact`).
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = redacting(out), redacting(err)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command if args.command != "sim" else f"sim {args.sim_command}"
        if command == "load" and getattr(args, "in_cluster", False):
            command = "load --in-cluster"
        try:
            too_big = flag_problem(vars(args))
            if too_big:
                raise UsageError(too_big)
            handler = _resolve(command)
            freeze_startup_heap()  # the command's modules are imported: keep the collector off them
            return handler(args)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    finally:
        for wrapped in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                wrapped.flush()
        sys.stdout, sys.stderr = out, err


if __name__ == "__main__":
    sys.exit(main())
