"""An MLServer model whose capacity is set by design rather than by the machine's CPU.

Each request holds the server's event loop for `service_ms` (a blocking sleep), so one MLServer
with `parallel_workers=0` answers at most about 1000 / (service_ms + its own overhead) requests a
second, whatever else the machine is doing. Tests of the capacity sweep use it as a server with a
known knee. MLServer loads this file from the model's folder (`write_paced_model` copies it there);
the harness itself never imports it.
"""

from __future__ import annotations

import time

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class PacedModel(MLModel):  # type: ignore[misc]  # mlserver ships no type information
    async def load(self) -> bool:
        parameters = self.settings.parameters
        extra = (parameters.extra if parameters is not None else None) or {}
        self._service_s = float(extra.get("service_ms", 4.0)) / 1000.0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        # Blocking on purpose: the event loop serves one request at a time, so the service time
        # bounds the throughput.
        time.sleep(self._service_s)
        return InferenceResponse(
            model_name=self.name,
            outputs=[ResponseOutput(name="predict", shape=[1], datatype="INT64", data=[0])],
        )
