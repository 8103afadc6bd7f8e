"""The internal token outlives a redeploy: one per Ray cluster, not one per build."""

from __future__ import annotations

from gateway import build


class FakeKV:
    """Ray's internal key-value store, as far as ``internal_token`` uses it."""

    def __init__(self, initialized: bool = True):
        self.initialized = initialized
        self.store: dict[tuple[bytes, bytes], bytes] = {}

    def _internal_kv_initialized(self) -> bool:
        return self.initialized

    def _internal_kv_put(self, key, value, overwrite=True, *, namespace=None) -> bool:
        existed = (namespace, key) in self.store
        if overwrite or not existed:
            self.store[(namespace, key)] = value.encode() if isinstance(value, str) else value
        return existed

    def _internal_kv_get(self, key, *, namespace=None):
        return self.store.get((namespace, key))


def test_every_build_on_one_cluster_gets_the_same_token(monkeypatch):
    kv = FakeKV()
    monkeypatch.setattr(build, "internal_kv", kv)
    first = build.internal_token()
    assert len(first) == 32 and build.internal_token() == first
    other = FakeKV()  # another cluster
    monkeypatch.setattr(build, "internal_kv", other)
    assert build.internal_token() != first


def test_without_ray_each_build_gets_a_fresh_token(monkeypatch):
    monkeypatch.setattr(build, "internal_kv", FakeKV(initialized=False))
    assert build.internal_token() != build.internal_token()
