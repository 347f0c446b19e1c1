"""Default chunk sizes of batches: chunks take about as long whatever the method."""

from __future__ import annotations

from schemas.batches import default_chunk_size
from schemas.defaults import BATCH_CHUNK_ITEMS


def test_one_copy_methods_get_the_default_chunk() -> None:
    assert default_chunk_size({}) == BATCH_CHUNK_ITEMS
    assert default_chunk_size({"method": "attention"}) == BATCH_CHUNK_ITEMS


def test_path_and_sampling_methods_get_smaller_chunks() -> None:
    assert default_chunk_size({"method": "integrated_gradients"}) == 1  # 50 steps by default
    many = default_chunk_size({"method": "integrated_gradients", "method_args": {"n_steps": 16}})
    few = default_chunk_size({"method": "integrated_gradients", "method_args": {"n_steps": 8}})
    assert 1 <= many < few == BATCH_CHUNK_ITEMS
    assert default_chunk_size({"method": "lime", "method_args": {"n_samples": 200}}) == 1
