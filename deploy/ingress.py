"""How clients reach the gateway: Ray Serve's HAProxy ingress, set on every Ray process.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Ray Serve runs HAProxy on each node in
place of its Python proxy actor and forwards HTTP straight to the gateway
replicas' own ports (direct ingress): no Ray object per response chunk. It
must be in the environment of the processes that start Ray (``ray start``,
or the driver of a local cluster). Measured against the default proxy in
docs/architecture.md and docs/benchmarks.md.
"""

RAY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}
