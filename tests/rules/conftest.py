"""The pure rules: Kubernetes and Seldon rules (harness/k8s), placement and SLO checks, bounds, the GPU layout."""
