"""A real MLServer on loopback: the sim's data plane and the latency engine's test target.

`train_iris` writes a small deterministic scikit-learn model with its MLServer settings (`cached_iris`
through the per-user cache);
`MLServerProcess` runs MLServer in its own process group on 127.0.0.1 with free ports and
loads/unloads models through the repository API. `write_paced_model` writes a model whose
capacity is set by a fixed service time (for tests of the capacity sweep).
"""

from harness.localserver.iris import IRIS_INPUT, USER_CACHE, cached_iris, train_iris
from harness.localserver.paced import write_paced_model
from harness.localserver.process import MLServerError, MLServerProcess, free_port

__all__ = ["IRIS_INPUT", "USER_CACHE", "MLServerError", "MLServerProcess", "cached_iris", "free_port", "train_iris",
           "write_paced_model"]
