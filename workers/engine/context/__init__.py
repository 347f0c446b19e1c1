"""PECoRe context attribution (the reference's `inseq attribute-context`): texts, selection and rendering.

The entry point is `workers.engine.context_attribution.run_context_attribution`.
"""
