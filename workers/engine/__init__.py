"""The attribution engine (torch, transformers, captum): `workers.engine.run.run_attribution` is its entry
point. Its modules import `workers.types` and each other, never the job function, the worker or RQ."""
