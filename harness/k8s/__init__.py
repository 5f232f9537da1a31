"""The Kubernetes and Seldon rules the whole harness uses, in one place: pure functions over plain dicts.

Every module here is a decision over data (a taint, a node, a pod spec, a Server) with no I/O, no
pytest and no profile: the sim, lint, checks, report and providers import these functions instead of
writing their own. Each rule names the upstream source it follows; tests/rules/test_k8s_rules.py pins it.

- `taints`    toleration/taint matching (k8s.io/api core/v1 Toleration.ToleratesTaint)
- `affinity`  nodeSelector, required node affinity and label selectors (component-helpers nodeaffinity)
- `quantity`  resource quantities (apimachinery resource.Quantity, through kubernetes.utils)
- `gpu`       "is this a GPU node" and "how many GPUs does this pod request"
- `seldon`    Seldon Core 2's Server podSpec merge and Model-to-Server capability matching
"""
