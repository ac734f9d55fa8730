"""``device.one_cpu_thread``: the calling thread's torch CPU operations on one thread, other threads untouched;
and the Sinkhorn loop that uses it."""

import threading

import pytest
import torch

from cae_core import device as device_module
from cae_core.inputs import planted_bundle
from cae_core.method import alignment as alignment_module
from cae_core.method.alignment import ot_alignment

SCALING_SWEEPS = alignment_module._scaling_sweeps
pytestmark = pytest.mark.skipif(device_module._openmp() is None, reason="torch's OpenMP runtime here is not libgomp")


def _threads_of_a_new_thread() -> int:
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_one_cpu_thread_sets_only_the_calling_threads_count_and_restores_it():
    runtime = device_module._openmp()
    before = torch.get_num_threads()
    runtime.omp_set_num_threads(3)  # a count of our own, so that the restore is seen even on a 1-core machine
    try:
        elsewhere = _threads_of_a_new_thread()
        with device_module.one_cpu_thread():
            assert torch.get_num_threads() == 1
            assert _threads_of_a_new_thread() == elsewhere  # torch.set_num_threads(1) would give a new thread 1
        assert torch.get_num_threads() == 3
        with pytest.raises(ValueError):
            with device_module.one_cpu_thread():
                raise ValueError("inside")
        assert torch.get_num_threads() == 3
    finally:
        runtime.omp_set_num_threads(before)


def _sinkhorn_thread_counts(monkeypatch, budget_factor: int) -> list[int]:
    """torch's thread count seen by each Sinkhorn sweep of a small OT run, its kernel budget set to
    ``budget_factor`` bytes per entry (4: float32 kernel, 3: float16)."""
    bundle = planted_bundle(n_images=300, n_classes=4, dim=32, n_nouns=120, n_captions=10, seed=5)
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", budget_factor * 300 * 120)
    seen = []

    def recording_sweeps(*args):
        sweep = SCALING_SWEEPS(*args)

        def recorded(g):
            seen.append(torch.get_num_threads())
            return sweep(g)
        return recorded
    monkeypatch.setattr(alignment_module, "_scaling_sweeps", recording_sweeps)
    ot_alignment(bundle.image_embeddings, bundle.noun_embeddings, device="cpu")
    return seen


def test_the_float16_kernels_sweeps_run_on_one_thread_and_the_float32_kernels_keep_all(monkeypatch):
    runtime = device_module._openmp()
    before = torch.get_num_threads()
    runtime.omp_set_num_threads(2)
    try:
        float16 = _sinkhorn_thread_counts(monkeypatch, 3)
        float32 = _sinkhorn_thread_counts(monkeypatch, 4)
        assert float16 and set(float16) == {1}
        assert float32 and set(float32) == {2}
        assert torch.get_num_threads() == 2
    finally:
        runtime.omp_set_num_threads(before)
