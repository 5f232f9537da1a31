"""The names of Seldon Core 2's API that every layer uses, defined once.

Source: SeldonIO/seldon-core v2.10.2 (commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce):
operator/apis/mlops/v1alpha1/groupversion_info.go (`SchemeGroupVersion`) and
operator/pkg/constants/constants.go (`ServerLabelNameKey`, `ModelFinalizerName`).
"""

from __future__ import annotations

SELDON_GROUP = "mlops.seldon.io"
SELDON_VERSION = "v1alpha1"
SELDON_API = f"{SELDON_GROUP}/{SELDON_VERSION}"
# The label the operator puts on a Server's StatefulSet pods: the Server's name.
SERVER_NAME_LABEL = "seldon-server-name"
# The finalizer the operator adds to a Model before its first load (a delete waits for the unload).
MODEL_FINALIZER = "seldon.model.finalizer"


def server_pod_selector(server: str) -> str:
    """The label selector of a Server's pods."""
    return f"{SERVER_NAME_LABEL}={server}"
