"""The engine: ``DeepRecall`` runs rlms's loop over a sandbox and a store."""

from deeprecall.engine.engine import DeepRecall

__all__ = ["DeepRecall"]
