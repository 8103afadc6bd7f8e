"""Engine adapter registry: the fleet names an engine, this builds it."""

from __future__ import annotations

from workers.engine import EngineAdapter
from workers.spec import PoolSpec


def make_engine(spec: PoolSpec) -> EngineAdapter:
    """Build (not start) the adapter a pool spec names."""
    if spec.engine == "vllm":
        from workers.vllm_engine import VLLMEngine

        return VLLMEngine(_resolve_model_path(spec.model), **spec.engine_args)
    if spec.engine == "furiosa":
        from workers.furiosa_engine import FuriosaEngine

        return FuriosaEngine(spec.model, **spec.engine_args)
    from workers.emulated_engine import EmulatedEngine

    return EmulatedEngine(hardware=spec.hardware, model=spec.model, **spec.emulated_engine_args())


def _resolve_model_path(model: str) -> str:
    """``tiny-llama`` is the locally built model; anything else goes to the engine as is."""
    if model == "tiny-llama":
        from workers.tiny_model import ensure_tiny_model

        return str(ensure_tiny_model())
    return model
