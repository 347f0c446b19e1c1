"""The catalogue in `schemas/` and the worker's registries list the same ids: a method, step function or
aggregator offered to clients always has an implementation, and nothing is implemented but not offered."""

from __future__ import annotations

import importlib
import typing

import numpy as np
import pytest
import torch

from schemas.aggregators import Aggregator
from schemas.jobs import JobKind
from schemas.methods import METHOD_ARGS, METHOD_SPECS
from schemas.redis_keys import ATTRIBUTION_JOB_FUNCTION, CONTEXT_JOB_FUNCTION, JOB_FUNCTIONS
from schemas.scores.functions import FUNCTIONS
from schemas.step_functions import STEP_FUNCTION_SPECS
from workers.engine.aggregation import REDUCERS
from workers.engine.step_functions import STEP_FUNCTION_REGISTRY, probability, register_step_function
from workers.methods.registry import METHOD_REGISTRY, build_method


def test_methods_match_the_catalogue() -> None:
    assert set(METHOD_REGISTRY) == set(METHOD_SPECS) == set(METHOD_ARGS)
    for method_id, cls in METHOD_REGISTRY.items():
        assert cls.id == method_id
        assert build_method(method_id, {}).reducers(None) == METHOD_SPECS[method_id].default_aggregators


@pytest.mark.parametrize("method_id", sorted(METHOD_SPECS))
def test_every_method_builds_with_its_catalogue_defaults(method_id: str) -> None:
    method = build_method(method_id, {})
    assert method.args == METHOD_ARGS[method_id]()


def test_step_functions_match_the_catalogue() -> None:
    assert set(STEP_FUNCTION_REGISTRY) == set(STEP_FUNCTION_SPECS)


def test_step_function_registration_refuses_silent_overwrites_and_unknown_ids() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_step_function("probability", probability)
    with pytest.raises(ValueError, match="no entry in schemas.step_functions"):
        register_step_function("not-in-the-catalogue", probability)
    assert "not-in-the-catalogue" not in STEP_FUNCTION_REGISTRY


def test_aggregators_match_the_catalogue() -> None:
    assert set(REDUCERS) == set(Aggregator) == set(FUNCTIONS)


@pytest.mark.parametrize("aggregator", list(Aggregator))
def test_torch_and_numpy_aggregators_agree(aggregator: Aggregator) -> None:
    """The workers reduce in torch as chunks come; the API re-aggregates stored scores in numpy: the same
    function must give the same numbers, NaN cells (undefined positions) included."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 4, 7, generator=generator)
    scores[3, 2:] = float("nan")  # a position after its step, all units undefined
    scores[0, 0, 3] = float("nan")
    want = REDUCERS[aggregator](scores).numpy()
    got = FUNCTIONS[aggregator](scores.numpy(), -1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("path", [ATTRIBUTION_JOB_FUNCTION, CONTEXT_JOB_FUNCTION])
def test_the_enqueued_job_functions_exist(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_every_job_kind_has_a_job_function() -> None:
    assert set(JOB_FUNCTIONS) == set(typing.get_args(JobKind))
    assert JOB_FUNCTIONS["attribute-context"] == CONTEXT_JOB_FUNCTION
