"""The NVIDIA device plugin's config for shared GPUs (time-slicing, MIG strategies), from the profile.

Keys follow NVIDIA/k8s-device-plugin tag v0.17.1: api/config/v1/config.go (`version: v1`, `flags`,
`sharing`), flags.go (`flags.migStrategy`), replicas.go (`sharing.timeSlicing.renameByDefault`,
`failRequestsGreaterThanOne`, `resources[].name|replicas`); the chart's values.yaml takes the file as
`config.map.<name>` (a string) and `config.default` names the one the plugin uses.
GKE installs its own device plugin (docs/gpu-sharing.md): nothing is rendered for it.
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.config import Profile

CONFIG_NAME = "harness"


def device_plugin_config(profile: Profile) -> dict[str, Any] | None:
    """The plugin's config file as a mapping; None when the GPUs are not shared (the chart's defaults)."""
    sharing = profile.gpu.shared(plugin=True)
    if sharing.platform == "gke" or (sharing.mig_strategy == "none" and not sharing.shared):
        return None
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": sharing.mig_strategy}}
    if sharing.shared:
        # The replicated resource is what the MIG strategy advertises: nvidia.com/gpu, or each MIG profile.
        names = [profile.gpu.resource_name] if sharing.mig_strategy != "mixed" else [
            r.removesuffix(".shared") for r in sharing.resources()]
        time_slicing: dict[str, Any] = {
            "resources": [{"name": n, "replicas": sharing.replicas} for n in names],
        }
        if sharing.rename:
            time_slicing["renameByDefault"] = True
        if sharing.fail_requests_greater_than_one:
            time_slicing["failRequestsGreaterThanOne"] = True
        config["sharing"] = {"timeSlicing": time_slicing}
    return config


def device_plugin_config_values(profile: Profile) -> dict[str, Any]:
    """Helm values that hand the config to the chart (empty when there is none)."""
    config = device_plugin_config(profile)
    if config is None:
        return {}
    text = yaml.safe_dump(config, sort_keys=False)
    return {"config": {"map": {CONFIG_NAME: text}, "default": CONFIG_NAME}}
