"""The attribution engine (torch, transformers, captum): `run_attribution` is its one entry point."""

from workers.engine.run import run_attribution

__all__ = ["run_attribution"]
