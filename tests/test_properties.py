"""Property-based tests (hypothesis) of what a user can hand the engine: a features bundle and the run options.

Each property draws a valid input, breaks it in one named way (or not), and requires either the right result
or a one-line ``CaeError`` that names the key, row or option at fault: never another exception, and never a
bundle or run that silently differs from what was given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from cae_core import CaeConfig, planted_bundle, run_method
from cae_core.cli import _cluster_count, _k_range, main
from cae_core.errors import FLOAT32_MAX, CaeError
from cae_core.inputs.bundle import load_bundle, save_bundle
from cae_core.method.fusion import COMBINES
from cae_core.method.methods import FUSION_CHOICES, SPACE_CHOICES

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMBEDDINGS = ("image_embeddings", "noun_embeddings", "caption_embeddings")
TEXTS = {"noun_embeddings": "nouns", "caption_embeddings": "captions"}


@st.composite
def bundle_arrays(draw) -> dict[str, np.ndarray]:
    """The arrays of a small valid bundle, with labels, class names and ids; values drawn by a seeded generator."""
    n, d = draw(st.integers(2, 9)), draw(st.integers(2, 6))
    m, c, classes = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    arrays = {"image_embeddings": rng.normal(size=(n, d)), "noun_embeddings": rng.normal(size=(m, d)),
              "caption_embeddings": rng.normal(size=(c, d)),
              "nouns": np.array([f"noun {k}" for k in range(m)]),
              "captions": np.array([f"a caption {k}" for k in range(c)]),
              "labels": rng.integers(-1, classes, size=n), "class_names": np.array([f"class {k}" for k in range(classes)]),
              "image_ids": np.array([f"img/{k:03d}.png" for k in range(n)])}
    # a row scaled far from 1 must still come back as its direction (float32 squares of 1e-25 or 1e25 do not)
    scale = draw(st.sampled_from([1.0, 1e-25, 1e25]))
    arrays["image_embeddings"][draw(st.integers(0, n - 1))] *= scale
    return arrays


def load(arrays: dict):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.npz"
        np.savez(path, **arrays)  # pickles object arrays, as a careless exporter's would be
        return load_bundle(path)


def refused(arrays: dict, *fragments: str) -> str:
    with pytest.raises(CaeError) as error:
        load(arrays)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@SETTINGS
@given(bundle_arrays())
def test_a_valid_bundle_loads_as_given(arrays):
    bundle = load(arrays)
    for key in EMBEDDINGS:
        np.testing.assert_allclose(getattr(bundle, key), unit(arrays[key]), atol=1e-6, err_msg=key)
        assert getattr(bundle, key).dtype == np.float32
    for key in ("nouns", "captions", "image_ids", "class_names"):
        assert getattr(bundle, key).tolist() == arrays[key].tolist(), key
    np.testing.assert_array_equal(bundle.labels, arrays["labels"])


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_a_non_finite_row_is_named(arrays, key, value, data):
    row = data.draw(st.integers(0, len(arrays[key]) - 1))
    arrays[key][row, data.draw(st.integers(0, arrays[key].shape[1] - 1))] = value
    refused(arrays, f"{key} contains NaN or infinite values", f"the first is row {row}")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS), st.data())
def test_a_zero_row_is_named(arrays, key, data):
    row = data.draw(st.integers(0, len(arrays[key]) - 1))
    arrays[key][row] = 0
    refused(arrays, f"{key} has an all-zero row", f"the first is row {row}")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS))
def test_values_beyond_float32_are_named_not_turned_into_zeros(arrays, key):
    arrays[key][0, 0] = 1e39
    refused(arrays, f"{key} has values beyond float32's range", "the first is row 0")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS[1:]), st.integers(1, 9))
def test_mismatched_dimensions_are_named(arrays, key, other):
    d = arrays["image_embeddings"].shape[1]
    assume(other != d)
    arrays[key] = np.ones((len(arrays[key]), other))
    refused(arrays, f"{key} has dimension {other} but image_embeddings has {d}")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS), st.sampled_from(["complex", "bool", "str"]))
def test_embeddings_of_the_wrong_kind_are_refused(arrays, key, kind):
    values = arrays[key]
    arrays[key] = {"complex": values + 1j * values, "bool": values > 0, "str": values.astype(str)}[kind]
    refused(arrays, f"{key} must hold real numbers, got dtype")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS + ("nouns", "labels")))
def test_object_arrays_are_refused_by_name_without_unpickling(arrays, key):
    arrays[key] = np.array(list(arrays[key]), dtype=object)
    refused(arrays, f"{key} is an object array")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(list(TEXTS.items())), st.integers(0, 8))
def test_text_and_embedding_counts_must_agree(arrays, pair, count):
    key, texts = pair
    assume(count != len(arrays[key]))
    arrays[texts] = np.array([f"t{k}" for k in range(count)])
    refused(arrays, f"{texts} has {count} entries but {key} has {len(arrays[key])} rows")


@SETTINGS
@given(bundle_arrays(), st.data())
def test_duplicate_image_ids_are_named(arrays, data):
    n = len(arrays["image_ids"])
    first = data.draw(st.integers(0, n - 2))
    second = data.draw(st.integers(first + 1, n - 1))
    arrays["image_ids"][second] = arrays["image_ids"][first]
    refused(arrays, f"image_ids repeats {str(arrays['image_ids'][first])!r} (rows {first}, {second}")


@SETTINGS
@given(bundle_arrays(), st.one_of(st.integers(-2 ** 40, -2), st.integers(0, 2 ** 62)), st.data())
def test_labels_out_of_range_are_named(arrays, value, data):
    n_classes = len(arrays["class_names"])
    assume(value < -1 or value >= n_classes)
    row = data.draw(st.integers(0, len(arrays["labels"]) - 1))
    arrays["labels"][:] = 0
    arrays["labels"][row] = value
    refused(arrays, f"labels must be -1..{n_classes - 1}", f"row {row} has {value}")


@SETTINGS
@given(bundle_arrays(), st.sampled_from([0.5, np.nan, np.inf, 2.0 ** 70]))
def test_labels_that_are_not_whole_numbers_or_wrap_are_refused(arrays, value):
    labels = arrays["labels"].astype(np.float64)
    labels[0] = value
    arrays["labels"] = labels
    refused(arrays, "labels must be")


@SETTINGS
@given(bundle_arrays(), st.sampled_from(EMBEDDINGS), st.integers(10 ** 6, 10 ** 12), st.integers(2, 10 ** 6))
def test_a_huge_declared_shape_is_refused_before_it_is_allocated(arrays, key, rows, columns):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.npz"
        np.savez(path, **{name: value for name, value in arrays.items() if name != key})
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (rows, columns)})
        with zipfile.ZipFile(path, "a") as archive:  # a header claiming terabytes, 64 bytes of data
            archive.writestr(f"{key}.npy", np.lib.format.MAGIC_PREFIX + b"\x02\x00" + header.getvalue()[8:]
                             + b"\0" * 64)
        with pytest.raises(CaeError) as error:
            load_bundle(path)
    assert f"{key} declares shape ({rows}, {columns})" in str(error.value) and "damaged" in str(error.value)


# ------------------------------------------------------------------------------------------------ options

INTEGER_FIELDS = ("n_centres", "train_size", "texts_per_centre", "sinkhorn_max_iter", "kmeans_max_iter",
                  "top_matches")
TEMPERATURES = ("epsilon", "retrieval_tau", "gamma")
CHOICES = {"fusion": FUSION_CHOICES, "combine": COMBINES, "space": SPACE_CHOICES}
NAMED_AS = {"combine": "fusion combination", "space": "semantic space"}  # how the messages name these
ANY_VALUE = st.one_of(st.integers(-10, 10), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                      st.floats(min_value=0, max_value=1e-30), st.booleans(), st.none(),
                      st.text(max_size=8), st.sampled_from(["adaptive", "paper", "concat", "sum", "tac", "hierarchy"]))


def valid(field: str, value) -> bool:
    """What each option accepts, stated here independently of the engine's checks."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if field in INTEGER_FIELDS:
        return (value is None and field in ("n_centres", "train_size")) or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    if field in TEMPERATURES:
        return is_number and math.isfinite(value) and value > 0 and 2 / value < FLOAT32_MAX
    if field == "sinkhorn_tol":
        return is_number and math.isfinite(value) and value > 0
    return isinstance(value, str) and value in CHOICES[field]


@SETTINGS
@given(st.sampled_from(INTEGER_FIELDS + TEMPERATURES + ("sinkhorn_tol", *CHOICES)), ANY_VALUE)
def test_each_run_option_is_accepted_exactly_when_valid_and_refused_by_name(field, value):
    try:
        config = CaeConfig(**{field: value})
    except CaeError as error:
        assert not valid(field, value), (field, value, str(error))
        message = str(error)
        assert NAMED_AS.get(field, field) in message, message
        assert "\n" not in message
    else:
        assert valid(field, value), (field, value)
        assert getattr(config, field) == value


@SETTINGS
@given(st.integers(2, 12), st.integers(-3, 20))
def test_the_number_of_clusters_is_checked_against_the_images(n_images, k):
    bundle = planted_bundle(n_images=n_images * 2, n_classes=2, dim=4, n_nouns=3, n_captions=3)
    bundle = bundle.subset(np.arange(n_images))
    if 1 <= k <= n_images:
        result = run_method(bundle, "clip-kmeans", k)
        assert result.assignments.shape == (n_images,) and set(result.assignments) <= set(range(k))
    else:
        expected = "must be a positive integer" if k < 1 else f"cannot make {k} clusters from {n_images} images"
        with pytest.raises(CaeError, match=expected):
            run_method(bundle, "clip-kmeans", k)


@SETTINGS
@given(st.text(max_size=12))
def test_cluster_count_and_k_range_parse_or_name_the_text(text):
    for parse in (_cluster_count, _k_range):
        try:
            parsed = parse(text)
        except argparse.ArgumentTypeError as error:
            assert repr(text) in str(error)
        else:
            if parse is _cluster_count:
                assert parsed == "auto" if text == "auto" else parsed == int(text)
            else:
                low, _, high = text.partition(":")
                assert parsed == (int(low), int(high or low))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    return save_bundle(planted_bundle(n_images=30, n_classes=3, dim=8, n_nouns=9, n_captions=9),
                       tmp_path_factory.mktemp("tiny") / "tiny.npz")


@SETTINGS
@given(option=st.sampled_from(["--epsilon", "--gamma", "--centres", "--texts-per-centre", "--seed", "--clusters"]),
       value=st.one_of(st.integers(-5, 40), st.integers(2 ** 62, 2 ** 70).map(str),
                       st.floats(allow_nan=True).map(repr), st.sampled_from(["inf", "nan", "1e-300", "x", ""])))
def test_the_cli_runs_or_says_what_is_wrong_in_one_line(tiny_bundle, option, value):
    with tempfile.TemporaryDirectory() as folder:
        check_cli(tiny_bundle, Path(folder) / "out", option, value)


def check_cli(tiny_bundle: Path, out: Path, option: str, value) -> None:
    argv = ["cluster", "--features", str(tiny_bundle), "--method", "clip-kmeans", "--clusters", "3", "--out",
            str(out), "--quiet", option, str(value)]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: a value of the wrong type
            code = exit_.code
    lines = stderr.getvalue().strip().splitlines()
    assert code in (0, 2), (argv, code, lines)
    if code == 0:
        assert (out / "assignments.csv").is_file()
    else:
        assert lines and "Traceback" not in stderr.getvalue()
        assert lines[-1].startswith(("error:", "python -m cae_core cluster: error:")), lines
        assert not (out / "assignments.csv").exists()
