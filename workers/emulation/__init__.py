"""Emulated inference: a virtual-time continuous batcher and synthetic text."""

from workers.emulation.batcher import ContinuousBatcher, Sequence, StepResult
from workers.emulation.text import VOCABULARY, SyntheticText

__all__ = ["VOCABULARY", "ContinuousBatcher", "Sequence", "StepResult", "SyntheticText"]
