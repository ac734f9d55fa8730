"""The two-pass nearest-reference search: its bfloat16 error bound, and results equal to a float64 brute force."""

import numpy as np
import pytest
import torch

from cae_core import nearest as search
from cae_core.arrays import unit_rows


def brute_force(rows: np.ndarray, reference: np.ndarray, k: int, exclude: np.ndarray | None = None):
    similarity = rows.astype(np.float64) @ reference.astype(np.float64).T
    if exclude is not None:
        has = exclude >= 0
        similarity[np.flatnonzero(has), exclude[has]] = -np.inf
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, order, axis=1), order


@pytest.mark.parametrize("dim", [16, 256, 4096])
def test_every_bfloat16_cosine_lies_within_its_proven_bounds(dim):
    rng = np.random.default_rng(dim)
    # every component (1 + 2^-8 - 2^-14) / sqrt(dim), sqrt(dim) a power of two: each rounds down by nearly the
    # unit roundoff u = 2^-8, so the row's product with itself (norm 1.004) is off by nearly 2u, the worst case
    worst = np.full((1, dim), (1 + 2 ** -8 - 2 ** -14) / np.sqrt(dim), dtype=np.float32)
    rows = np.concatenate([worst, unit_rows(rng.normal(size=(60, dim)))]).astype(np.float32)
    reference = np.concatenate([worst, unit_rows(rows[1:30] + 0.01 * rng.normal(size=(29, dim))),
                                unit_rows(rng.normal(size=(40, dim)))]).astype(np.float32)
    exact = rows.astype(np.float64) @ reference.astype(np.float64).T
    rows_t, low = torch.as_tensor(rows), search.low_precision_copy(torch.as_tensor(reference))
    # before the result is rounded: the products of the rounded inputs, summed
    summed = rows_t.bfloat16().double().numpy() @ low.rows.double().numpy().T
    bound = search._rounding_bound((rows_t - rows_t.bfloat16().float()).norm(dim=1), low.error, dim)[:, None].double().numpy()
    assert np.all(np.abs(exact - summed) <= bound)
    # the construction reaches the worst case, nearly 2u: a bound short of either row's error (~u each) fails
    assert exact[0, 0] - summed[0, 0] > 1.9 * 2 ** -8
    # the rounded result: the sum it came from lies between _lower and _upper of it (float32 accumulation's
    # own error is part of the bound above)
    rounded = (rows_t.bfloat16() @ low.rows.T).float()
    accumulation = dim * 2.0 ** -24 * 1.01
    assert np.all(summed <= search._upper(rounded).double().numpy() + accumulation)
    assert np.all(summed >= search._lower(rounded).double().numpy() - accumulation)
    assert np.all(exact <= (search._upper(rounded).double().numpy() + bound))
    assert np.all(exact >= (search._lower(rounded).double().numpy() - bound))


def test_two_passes_give_the_float32_result_even_where_the_band_holds_more_than_the_candidates():
    rng = np.random.default_rng(0)
    dim, k = 64, 10
    centre = unit_rows(rng.normal(size=dim))
    # 80 references within bfloat16's error of each other around one direction: more than CANDIDATES in the
    # band, so rows facing them must be searched again in float32; 400 spread references elsewhere
    crowd = unit_rows(centre + 2e-3 * rng.normal(size=(80, dim)))
    reference = np.concatenate([crowd, unit_rows(rng.normal(size=(400, dim)))]).astype(np.float32)
    rows = unit_rows(np.concatenate([centre + 0.05 * rng.normal(size=(30, dim)), rng.normal(size=(30, dim))]))
    exclude = np.full(len(rows), -1)
    exclude[::3] = rng.integers(0, len(reference), size=20)
    exclude[:6] = np.arange(6)  # rows facing the crowd may not take some of it
    reference_t = torch.as_tensor(reference)
    value, index = search.nearest(torch.as_tensor(rows), reference_t, k, torch.as_tensor(exclude),
                                  search.low_precision_copy(reference_t))
    expected_value, expected_index = brute_force(rows, reference, k, exclude)
    np.testing.assert_allclose(value.numpy(), expected_value, atol=1e-6)
    # the same references, except where two are tied to within float32's rounding
    gaps = np.diff(np.sort(rows.astype(np.float64) @ reference.astype(np.float64).T, axis=1), axis=1)
    assert np.array_equal(np.sort(index.numpy(), axis=1), np.sort(expected_index, axis=1)) or gaps.min() < 1e-6
    assert not np.any(index.numpy() == exclude[:, None])


def test_the_crowded_rows_need_the_float32_search_again(monkeypatch):
    """The previous test's rows facing the crowd take the float32 path; without it the result would be wrong."""
    rng = np.random.default_rng(0)
    dim, k = 64, 10
    centre = unit_rows(rng.normal(size=dim))
    reference = np.concatenate([unit_rows(centre + 2e-3 * rng.normal(size=(80, dim))),
                                unit_rows(rng.normal(size=(400, dim)))]).astype(np.float32)
    rows = unit_rows(centre + 0.05 * rng.normal(size=(30, dim)))
    searched = []
    single_pass = search.nearest

    def counting(rows_, reference_, k_, exclude=None, low=None):
        if low is None:
            searched.append(len(rows_))
        return single_pass(rows_, reference_, k_, exclude, low)
    monkeypatch.setattr(search, "nearest", counting)
    reference_t = torch.as_tensor(reference)
    search.nearest(torch.as_tensor(rows), reference_t, k, low=search.low_precision_copy(reference_t))
    assert searched == [30]
    # the candidates alone, re-ranked, miss some of the true ten
    approximate = (torch.as_tensor(rows).bfloat16() @ reference_t.bfloat16().T).topk(search.CANDIDATES, dim=1).indices
    _, expected = brute_force(rows, reference, k)
    assert any(not set(e) <= set(a) for a, e in zip(approximate.numpy(), expected))


def test_well_separated_rows_are_settled_by_the_candidates_alone(monkeypatch):
    rng = np.random.default_rng(1)
    reference = unit_rows(rng.normal(size=(300, 32))).astype(np.float32)
    rows = unit_rows(reference[:40] + 0.02 * rng.normal(size=(40, 32)))
    monkeypatch.setattr(search, "CANDIDATES", 300 - 1)  # a band of at most 299 references: always covered
    reference_t = torch.as_tensor(reference)
    value, index = search.nearest(torch.as_tensor(rows), reference_t, 1, low=search.low_precision_copy(reference_t))
    assert np.array_equal(index.numpy()[:, 0], np.arange(40))
    np.testing.assert_allclose(value.numpy()[:, 0], np.sum(rows * reference[:40], axis=1), atol=1e-6)


def test_small_references_and_large_k_take_one_float32_pass():
    rng = np.random.default_rng(2)
    reference = unit_rows(rng.normal(size=(20, 16))).astype(np.float32)
    rows = unit_rows(rng.normal(size=(7, 16))).astype(np.float32)
    reference_t = torch.as_tensor(reference)
    value, index = search.nearest(torch.as_tensor(rows), reference_t, 5, low=search.low_precision_copy(reference_t))
    expected_value, expected_index = brute_force(rows, reference, 5)
    assert np.array_equal(index.numpy(), expected_index)
    np.testing.assert_allclose(value.numpy(), expected_value, atol=1e-6)


def test_cuda_references_get_no_bfloat16_copy():
    assert search.low_precision_copy(torch.ones(3, 2)).rows.dtype == torch.bfloat16
    if torch.cuda.is_available():
        assert search.low_precision_copy(torch.zeros(3, 2, device="cuda")) is None
