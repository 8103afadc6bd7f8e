"""Deployment outside ``hetserve serve``: Serve config YAML, KubeRay manifests, placement checks."""
