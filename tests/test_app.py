"""The Streamlit app through AppTest: every page renders with nothing loaded, and with a prepared run it
draws what each step promises. Time: ~1-2 min on 2 cores, most of it UMAP (numba compiles it once per
machine, ~20 s, then its cache under site-packages is reused) and one random-weight CLIP encode."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import CaeConfig, run_methods
from cifar_data import CIFAR, planted_cifar_bundle
from explorer.state import WORKSPACE_KEY, Workspace
from explorer.widgets import escape_markdown
from ot_reference import heaviest, row_shares

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = [None] + sorted(f"pages/{path.name}" for path in (REPO / "pages").glob("[0-9]_*.py"))
GUIDED_PAGES = ("pages/2_Semantic_space.py", "pages/3_Correspondences.py", "pages/4_Embedding_map.py")
TIMEOUT = 300


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Caches (projections, uploads, embeddings) go to a temporary folder shared by this test session."""
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def open_page(page: str | None, workspace: Workspace | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if workspace is not None:
        at.session_state[WORKSPACE_KEY] = workspace
    if page is not None:
        at.switch_page(page)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [element.message for element in at.exception]
    assert not at.error, [element.value for element in at.error]


def tables_with(at: AppTest, column: str) -> list:
    """The tables (DataFrames) on the page that have ``column``, in page order."""
    return [frame.value for frame in at.dataframe if column in frame.value.columns]


def images_on(at: AppTest) -> list:
    """Every st.image on the page (AppTest has no typed accessor for them)."""
    found = []

    def walk(node) -> None:
        if getattr(node, "type", None) == "image":
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return found


def plotly_specs(at: AppTest) -> list[str]:
    return [element.proto.spec for element in at.get("plotly_chart")]


def page_title(page: str | None) -> str:
    """The title a page draws: its file name without the number ("pages/2_Semantic_space.py": Semantic space)."""
    return "CAE Explorer" if page is None else Path(page).stem.split("_", 1)[1].replace("_", " ")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_with_nothing_loaded(page):
    at = open_page(page)
    assert_clean(at)
    assert [title.value for title in at.title] == [page_title(page)]
    infos = [info.value for info in at.info]
    if page is None:
        assert any("Nothing is loaded in this session" in info for info in infos)
        assert any("planted embeddings" in caption.value for caption in at.caption)  # the demo list
    elif page == "pages/1_Dataset.py":
        assert at.radio(key="source-kind").value and at.radio(key="bundle-how").value  # the two ways in
    elif page == "pages/6_Polysemy.py":
        assert any("WordNet senses of “crane”" in header.value for header in at.subheader)
        assert any("No data is loaded" in caption.value for caption in at.caption)
    elif page == "pages/8_Runs.py":  # the store, not the session: it lists runs, or says how they get there
        assert any(info.startswith("No recorded runs match") for info in infos) or \
            any("run(s) · kept in" in caption.value for caption in at.caption)
    else:
        assert any(info.startswith("Nothing is loaded yet. On the **Dataset** page") for info in infos)
    if page in GUIDED_PAGES:
        # guidance: point to a checkpoint, load a bundle, or choose random weights
        assert any("random weights" in info for info in infos)


@pytest.fixture(scope="module")
def workspace() -> Workspace:
    """300 real CIFAR-10 test images with synthetic embeddings planted by class, and a full run."""
    bundle = planted_cifar_bundle()
    ws = Workspace()
    ws.load(bundle, "cifar10-test (planted embeddings)", CIFAR, random_weights=True)
    ws.set_results(run_methods(bundle, n_clusters=ws.n_clusters, seed=ws.seed))
    return ws


def test_home_says_what_is_loaded(workspace):
    at = open_page(None, workspace)
    assert_clean(at)
    assert any("semantics are meaningless" in warning.value for warning in at.warning)
    facts = at.dataframe[0].value
    assert "300" in facts["value"].tolist()
    methods = at.dataframe[1].value
    assert "cae" in methods["method"].tolist() and methods["acc"].notna().all()


def test_semantic_space_page(workspace):
    at = open_page("pages/2_Semantic_space.py", workspace)
    assert_clean(at)
    centres, = tables_with(at, "top nouns")
    n_centres = workspace.results["cae"].semantic_space.n_centres
    assert len(centres) == n_centres and centres["images"].sum() == 300
    # 3K centres for 300 images of 10 classes: a centre may win no noun, and then shows none
    chosen = centres["top nouns"][centres["top nouns"] != ""]
    assert len(chosen) >= 10 and chosen.str.startswith("noun").all()
    assert at.metric[0].value == str(n_centres)
    selected = [frame.value for frame in at.dataframe if "score" in frame.value.columns]
    assert len(selected) == 2 and selected[0]["text"].str.startswith("noun").all()
    assert selected[1]["text"].str.startswith("caption").all()
    assert plotly_specs(at)  # how the texts distribute over the centres
    space = workspace.results["cae"].semantic_space
    first_centre_size = int((space.centre_of_image == 0).sum())
    # the images closest to the chosen centre, then MCA's Figure 1: 24 images and their nearest nouns
    assert len(images_on(at)) == min(8, first_centre_size) + 24
    assert any("right and wrong cannot be told" in caption.value for caption in at.caption)  # planted: no synsets

    # editing the settings rebuilds the space and the page follows
    at.number_input[0].set_value(n_centres + 3).run()
    assert_clean(at)
    assert len(tables_with(at, "top nouns")[0]) == n_centres + 3
    assert any("Use these settings" in button.label for button in at.button)


def test_correspondences_page(workspace):
    at = open_page("pages/3_Correspondences.py", workspace)
    assert_clean(at)
    tables = tables_with(at, "mass")  # OT and softmax for nouns, then for captions
    assert len(tables) == 4
    image, epsilon = 0, workspace.results["cae"].config.epsilon
    for (ot_table, softmax_table), part in zip((tables[:2], tables[2:]), workspace.results["cae"].aligned.values()):
        texts = part.selection.texts.astype(str)
        # the OT table is image 0's row of the plan (POT's Sinkhorn, computed here), heaviest five
        top, share = heaviest(row_shares(workspace.bundle.image_embeddings, part.selection.embeddings, epsilon),
                              image, 5)
        # the softmax table: softmax of the cosines at the same temperature, no column constraint
        cosine = workspace.bundle.image_embeddings[image] @ part.selection.embeddings.T
        probability = np.exp((cosine - cosine.max()) / epsilon)
        soft_top, soft_share = heaviest((probability / probability.sum())[None], 0, 5)
        for table, rows, expected in ((ot_table, top, share), (softmax_table, soft_top, soft_share)):
            assert list(table.columns) == ["text", "mass", "cosine"] and len(table) == 5
            assert table["text"].tolist() == texts[rows].tolist()
            np.testing.assert_allclose(table["mass"], expected, atol=1e-4)
            np.testing.assert_allclose(table["cosine"], cosine[rows], atol=1e-5)
    assert any('"weight"' in spec for spec in plotly_specs(at))  # the fusion weights bar
    assert len(images_on(at)) == 1 + 4 * 6  # the image, then 6 nearest in each of the 4 representations
    assert any("Why is this image here?" in header.value for header in at.subheader)
    assert any("of its noun mass goes to texts that name its cluster" in text.value for text in at.markdown)

    at.button[1].click().run()  # next ▶
    assert_clean(at)
    assert at.number_input[0].value == 2
    assert any("Image index 1 of 300" in caption.value for caption in at.caption)

    noun = str(workspace.results["cae"].semantic_space.nouns.texts[0])
    at.radio(key="correspondences-mode").set_value("by noun").run()
    at.selectbox[0].set_value(noun).run()
    assert_clean(at)
    assert noun in tables_with(at, "mass")[0]["text"].tolist()[:3]
    # the default weights are trust weights, and the page says what decided them
    assert any("Trust weights" in caption.value for caption in at.caption)
    assert not any("driven by the modality gap" in warning.value for warning in at.warning)


def test_correspondences_page_says_when_the_modality_gap_drives_the_weights(workspace):
    paper = Workspace(bundle=workspace.bundle, image_root=workspace.image_root, n_clusters=workspace.n_clusters,
                      config=CaeConfig(fusion="paper", centre=False))
    paper.set_results(run_methods(paper.bundle, ["cae"], paper.n_clusters, config=paper.config))
    at = open_page("pages/3_Correspondences.py", paper)
    assert_clean(at)
    assert any("driven by the modality gap" in warning.value for warning in at.warning)
    offsets = tables_with(at, "mean cos to prototype")[0]["mean cos to prototype"]
    assert offsets.iloc[1] - offsets.iloc[0] > 0.2  # planted with CLIP's gap


def test_embedding_map_page(workspace):
    at = open_page("pages/4_Embedding_map.py", workspace)
    assert_clean(at)
    specs = plotly_specs(at)
    assert len(specs) == 4 and all('"scatter' in spec for spec in specs)
    assert any("Fused features" in markdown.value for markdown in at.markdown)

    at.checkbox[0].check().run()  # texts drawn in the same map
    assert_clean(at)
    assert any("selected nouns" in spec for spec in plotly_specs(at))
    assert any("Nothing selected" in caption.value for caption in at.caption)


def test_a_selection_is_highlighted_in_every_map_listed_and_browsable(workspace):
    """A box or lasso calls ``Workspace.select`` (the browser test draws a real one); here the selection is
    set directly, and every map, the gallery, the download and the Correspondences page must follow it."""
    ws = dataclasses.replace(workspace)  # its own selection; the runs are shared
    chosen = np.flatnonzero(ws.results["cae"].assignments == 1)[:12]
    ws.select(chosen, "Image embeddings")
    at = open_page("pages/4_Embedding_map.py", ws)
    assert_clean(at)
    specs = [json.loads(spec) for spec in plotly_specs(at)]
    assert len(specs) == 4
    for spec in specs:
        highlighted, = [trace for trace in spec["data"] if trace.get("name") == "selection"]
        assert sorted(map(int, highlighted["ids"])) == sorted(chosen.tolist())
    assert any(f"{len(chosen)} images selected" in text.value for text in at.markdown)
    download = at.get("download_button")
    assert len(download) == 1

    at.segmented_control(key="map-view").set_value("Cross-modal map").run()
    assert_clean(at)
    texts = ws.results["cae"].semantic_space.nouns.texts
    at.multiselect(key="cross-modal-texts").set_value(["nouns:0"]).run()
    assert_clean(at)
    spec = json.loads(plotly_specs(at)[0])
    links = [trace for trace in spec["data"] if trace.get("mode") == "lines"]
    assert links, "no transport links drawn for the chosen noun"
    assert any(str(texts[0]) in text.value and "images send it part of their mass" in text.value
               for text in at.markdown)

    at = open_page("pages/3_Correspondences.py", ws)
    at.radio(key="correspondences-mode").set_value("map selection").run()
    assert_clean(at)
    assert at.number_input[0].max == len(chosen)
    assert any("images selected in Image embeddings" in caption.value for caption in at.caption)


def test_clusters_page_estimates_k_and_shows_quality_without_labels(workspace):
    at = open_page("pages/5_Clusters.py", workspace)
    assert_clean(at)
    quality, = tables_with(at, "silhouette")
    assert quality["cluster"].iloc[-1] == "all" and quality["size"].iloc[-1] == workspace.bundle.n_images
    at.number_input(key="k-high").set_value(12).run()
    at.button(key="k-estimate").click().run()
    assert_clean(at)
    assert any("Estimated **K = " in text.value and "the labels have 10 classes" in text.value for text in at.markdown)


def test_search_page_ranks_images_for_a_bank_word(workspace):
    noun = str(workspace.results["cae"].semantic_space.nouns.texts[0])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[WORKSPACE_KEY] = workspace
    at.switch_page("pages/7_Search.py")
    at.query_params["q"] = noun
    at.run()
    assert_clean(at)
    assert any("stands in" in info.value for info in at.info)
    assert any("Nearest by cosine** (the 24 highest)" in text.value for text in at.markdown)
    assert any("Linked by the transport plan" in text.value for text in at.markdown)
    # each thumbnail's caption: "#index · class · value"; 24 by cosine, then those the plan links
    shown = [element.proto.imgs[0].caption.replace("\\", "").split(" · ") for element in images_on(at)]
    by_cosine, by_plan = shown[:24], shown[24:]
    bundle = workspace.bundle
    row = bundle.nouns.tolist().index(noun)  # the bank's own row stands in for the word
    cosine = bundle.image_embeddings @ bundle.noun_embeddings[row]
    ranked = np.argsort(-cosine, kind="stable")[:24]
    assert [int(index.lstrip("#")) for index, _, _ in by_cosine] == ranked.tolist()
    assert [float(value) for _, _, value in by_cosine] == pytest.approx(cosine[ranked], abs=5e-4)
    assert [name for _, name, _ in by_cosine] == [bundle.label_name(int(bundle.labels[i])) for i in ranked]
    # planted: "noun 6-0" names class 6, and the images the plan links to it are that class's
    word_class = int(noun.split()[1].split("-")[0])
    assert 0 < len(by_plan) <= 24
    assert np.mean([name == bundle.label_name(word_class) for _, name, _ in by_plan]) >= 0.8
    masses = [float(value) for _, _, value in by_plan]
    assert masses == sorted(masses, reverse=True) and all(0 < mass for mass in masses)
    overlap = len({index for index, _, _ in by_cosine} & {index for index, _, _ in by_plan})
    assert any(caption.value.startswith(f"{overlap} images are in both lists") for caption in at.caption)


def test_dataset_page_refuses_paths_outside_the_allowed_roots():
    at = open_page("pages/1_Dataset.py")
    at.radio(key="source-kind").set_value("folder on the server").run()
    at.text_input(key="folder-path").input("/etc").run()
    assert not at.exception
    assert any("refused" in error.value for error in at.error)


def test_dataset_page_loads_a_bundle_from_the_server(workspace, tmp_path, monkeypatch):
    from cae_core.inputs.bundle import save_bundle

    monkeypatch.setenv("CAE_ALLOWED_ROOTS", str(tmp_path))
    path = save_bundle(workspace.bundle, tmp_path / "features.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a bundle")
    at = open_page("pages/1_Dataset.py")
    at.radio(key="bundle-how").set_value("file on the server").run()
    at.text_input(key="bundle-path").input(str(tmp_path / "broken.npz")).run()
    at.button(key="load-bundle").click().run()
    assert not at.exception and any("not a readable" in error.value for error in at.error)

    at.text_input(key="bundle-path").input(str(path)).run()
    at.text_input(key="bundle-images").input(str(CIFAR)).run()
    at.button(key="load-bundle").click().run()
    assert_clean(at)
    loaded = at.session_state[WORKSPACE_KEY]
    assert loaded.bundle.n_images == 300 and loaded.image_root == CIFAR.resolve()


def test_dataset_page_encodes_with_a_random_weight_model(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    if not CIFAR.is_dir():
        pytest.skip(f"the shared CIFAR-10 images are not at {CIFAR}")
    monkeypatch.setenv("CAE_ALLOWED_ROOTS", str(tmp_path))
    (tmp_path / "nouns.txt").write_text("\n".join(["cat", "dog", "truck", "ship", "frog", "horse", "bird", "deer",
                                                    "airplane", "automobile", "tree", "road"]))
    (tmp_path / "captions.txt").write_text("\n".join([f"a photo of a {word} number {i}" for i in range(4)
                                                      for word in ("cat", "dog", "ship", "car", "bird")]))
    at = open_page("pages/1_Dataset.py")
    at.selectbox(key="shared-set").set_value("cifar10-test").run()
    at.number_input(key="limit").set_value(24).run()
    assert_clean(at)
    assert any("24 images" in markdown.value for markdown in at.markdown)
    at.radio(key="weights").set_value("random weights").run()
    for kind in ("nouns", "captions"):
        at.radio(key=f"{kind}-bank").set_value("file on the server").run()
        at.text_input(key=f"{kind}-path").input(str(tmp_path / f"{kind}.txt")).run()
    at.slider(key="templates").set_value(1).run()
    at.button(key="encode").click().run()
    assert_clean(at)
    ws = at.session_state[WORKSPACE_KEY]
    assert ws.bundle.n_images == 24 and len(ws.bundle.nouns) == 12 and ws.random_weights
    assert any("semantics are meaningless" in warning.value for warning in at.warning)

    at.button(key="dataset-run").click().run()
    assert_clean(at)
    assert "cae" in at.session_state[WORKSPACE_KEY].results


def test_escape_markdown_shows_data_literally():
    hostile = "![x](http://example.com/a.png) <script>alert(1)</script> **bold** :red[x] $x$"
    escaped = escape_markdown(hostile)
    for token in ("![", "](", "<script>", "**", ":red[", "$x$"):
        assert token not in escaped
    assert escaped.replace("\\", "") == hostile


def test_projection_subsamples_and_fits_texts_jointly(tmp_path, monkeypatch):
    from cae_core.analysis import projection
    from cae_core.analysis.projection import project

    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path / "cache"))
    fits = []
    real_fit = projection._fit
    monkeypatch.setattr(projection, "_fit", lambda *args: fits.append(args[0].shape) or real_fit(*args))
    rng = np.random.default_rng(0)
    points, texts = rng.normal(size=(120, 16)), rng.normal(size=(7, 16))
    (image_xy, text_xy), index = project(points, texts, n_neighbors=5, max_points=50)
    assert image_xy.shape == (50, 2) and text_xy.shape == (7, 2) and len(index) == 50
    assert np.all(np.diff(index) > 0) and index.max() < 120
    assert fits == [(57, 16)]  # one joint fit of the 50 sampled images and the 7 texts
    again, same_index = project(points, texts, n_neighbors=5, max_points=50)  # same inputs: read from the cache
    assert fits == [(57, 16)] and np.array_equal(same_index, index)
    np.testing.assert_array_equal(again[0], image_xy)
    project(points, texts, n_neighbors=5, max_points=50, seed=1)  # another seed is another map: fitted
    assert fits == [(57, 16)] * 2
