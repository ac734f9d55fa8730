"""Step 1: the data — images, a CLIP model and the two text banks, encoded into a features bundle;
or a bundle loaded as it is."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cae_core import CaeError, data_dir, load_bundle
from cae_core.inputs import BENCHMARKS, PRESETS, TAC_TEMPLATES, allowed_roots, dataset_choices, encode_dataset, \
    has_random_weights, image_root_of, resolve_allowed_path
from explorer import views
from explorer.navigation import SEMANTIC_SPACE_PAGE
from explorer.widgets import escape_markdown, image_grid, page_header, run_controls, show_error, user_errors
from explorer.resources import clip_model, open_clip_models, pretrained_tags, saved_upload

SHARED, FOLDER, ZIP, BENCHMARK = "shared image set", "folder on the server", "zip upload", "torchvision benchmark"
TAG, CHECKPOINT, RANDOM = "pretrained tag", "checkpoint file", "random weights"
SERVER_FILE, UPLOAD = "file on the server", "upload a file"
CUSTOM = "custom"
PER_IMAGE = "per-image captions (CSV)"

ws = page_header("Dataset", "Images, a CLIP model and the text banks, encoded by the same model into a features "
                            "bundle; or a bundle (.npz) loaded as it is.")
roots_note = "Readable folders: " + ", ".join(str(root) for root in allowed_roots()) + \
             " (the operator adds more with CAE_ALLOWED_ROOTS)."


def server_path(label: str, key: str) -> Path | None:
    """A path typed by the user, accepted only inside the allowed roots (else a message and None)."""
    typed = st.text_input(label, key=key, help=roots_note).strip()
    if not typed:
        return None
    with user_errors():
        return resolve_allowed_path(typed, allowed_roots())
    return None


def text_bank(kind: str, corpora: dict[str, str], extra: tuple[str, ...] = ()) -> str | None:
    """The spec of a noun or caption bank for ``encode_dataset``: a corpus name or a file path; a choice
    in ``extra`` is returned as it is (the page asks the rest)."""
    choice = st.radio(f"{kind.capitalize()}", [*corpora, SERVER_FILE, UPLOAD, *extra], horizontal=True,
                      key=f"{kind}-bank", format_func=lambda option: corpora.get(option, option))
    if choice in corpora or choice in extra:
        return choice
    if choice == SERVER_FILE:
        path = server_path(f"{kind.capitalize()} file (one per line, .txt or .txt.gz)", f"{kind}-path")
        return str(path) if path else None
    upload = st.file_uploader(f"{kind.capitalize()} file (one per line)", type=["txt", "gz"], key=f"{kind}-upload")
    return str(saved_upload(upload)) if upload else None


def apply_preset() -> None:
    """Set the widgets below to the chosen preset's values (callbacks run before the page)."""
    preset = PRESETS.get(st.session_state["preset"])
    if preset is not None:
        st.session_state.update({"limit": preset.limit or 0, "nouns-bank": preset.nouns, "templates": preset.templates,
                                 "captions-bank": preset.captions, "max-captions": preset.max_captions or 0})


def image_spec() -> str | None:
    """The image source chosen (a shared set's name, a folder, a saved zip, a benchmark), or None yet."""
    kind = st.radio("Source", [SHARED, FOLDER, ZIP, BENCHMARK], horizontal=True, key="source-kind")
    if kind == SHARED:
        choices = dataset_choices()
        if not choices:
            st.warning(f"No image sets found under {data_dir() / 'images'}; set CAE_DATA_DIR to the data "
                       "folder, or use another source.")
            return None
        return st.selectbox("Image set", list(choices), key="shared-set")
    if kind == FOLDER:
        folder = server_path("Folder of images (one subfolder per class, or a flat folder)", "folder-path")
        return str(folder) if folder else None
    if kind == ZIP:
        upload = st.file_uploader("Zip archive of images", type="zip", key="zip-upload")
        return str(saved_upload(upload)) if upload else None
    name = st.selectbox("Benchmark", list(BENCHMARKS), key="benchmark",
                        format_func=lambda key: f"{key}: {BENCHMARKS[key].description}")
    st.caption("Downloaded by torchvision on first use (needs internet), then kept.")
    return name if st.toggle("Open it", key="benchmark-open") else None


def show_source(source) -> None:
    """What the listing found: counts per class, a sample of pictures, the files skipped."""
    classes = views.class_counts([record.label for record in source.records], source.class_names)
    st.markdown(f"**{len(source.records):,} images** in {escape_markdown(source.name)}, "
                f"{len(classes) if source.class_names else 'no'} classes, {len(source.skipped)} files skipped.")
    counts_column, grid_column = st.columns([1, 3])
    if source.class_names:
        counts_column.dataframe(classes, hide_index=True, height=300)
    sample = views.spread_sample([record.label for record in source.records], 16)
    with grid_column:
        image_grid([source.records[i].path for i in sample],
                   [source.records[i].image_id for i in sample], columns=8, size=96)
    if source.skipped:
        with st.expander(f"{len(source.skipped)} files skipped"):
            st.dataframe(views.skipped_table(source.skipped), hide_index=True)


def model_choice() -> tuple[str, str, str | None, str]:
    """(weights kind, architecture, pretrained tag or checkpoint path or None, device)."""
    st.markdown("**Model**")
    weights = st.radio("Weights", [TAG, CHECKPOINT, RANDOM], horizontal=True, key="weights")
    models = open_clip_models()
    default_model = "ViT-S-32" if weights == RANDOM else "ViT-B-32"
    model_column, weights_column, device_column = st.columns(3)
    model = model_column.selectbox("Architecture (open_clip)", models, index=models.index(default_model),
                                   key=f"model-{weights}")
    pretrained: str | None = None
    with weights_column:
        if weights == TAG:
            pretrained = st.selectbox("Tag", pretrained_tags(model), key="tag")
        elif weights == CHECKPOINT:
            checkpoint = server_path("Checkpoint file (.pt, .bin, .safetensors)", "checkpoint-path")
            pretrained = str(checkpoint) if checkpoint else None
        else:
            st.warning("Untrained model: the semantics are meaningless; only the mechanics are worth "
                       "exploring. ViT-S-32 is the fastest architecture.", icon=":material/warning:")
    device = device_column.selectbox("Device", ["auto", "cpu", "cuda"], key="device")
    return weights, model, pretrained, device


def caption_bank() -> tuple[str | None, Path | None]:
    """(the caption bank's spec, the per-image captions CSV when that is the choice)."""
    captions = text_bank("captions", {"flickr30k": "Flickr30k captions (155,070)",
                                      "flickr8k": "Flickr8k captions (40,460)"}, extra=(PER_IMAGE,))
    if captions != PER_IMAGE:
        return captions, None
    per_image = server_path("Per-image captions: a CSV with the columns image_id,caption (image_id as the "
                            "image ids above; several rows per image allowed)", "per-image-path")
    st.caption("Per-image captions describe one image each, as a vision-language model writes them (SAC). "
               "Write the CSV with open_clip's CoCa: `python -m cae_core caption --images SOURCE --out "
               "captions.csv` (downloads CoCa's weights where there is internet, or takes `--pretrained "
               "/path/to/checkpoint`), or with any other captioning model. Rows for unknown images and "
               "empty captions are skipped and listed.")
    return (str(per_image) if per_image else None), per_image


def encode(spec: str, source, weights: str, model: str, pretrained: str | None, device: str, nouns: str,
           captions: str, per_image: Path | None, limit: int, templates: int, max_captions: int) -> None:
    """Encode with progress bars; on success load the bundle and rerun, else the reason as a message."""
    with st.status(f"Encoding {len(source.records):,} images and the text banks with {model}",
                   expanded=True) as status:
        bars: dict[str, object] = {}

        def progress(stage: str, fraction: float, message: str) -> None:
            if stage not in bars:
                bars[stage] = st.progress(0.0)
            bars[stage].progress(min(max(fraction, 0.0), 1.0), text=f"{stage}: {message}")

        try:
            bundle, report = encode_dataset(spec, model, pretrained, nouns, captions, device, limit=limit or None,
                                            templates=templates, max_captions=max_captions or None,
                                            progress=progress, clip=clip_model(model, pretrained, device),
                                            per_image_captions=str(per_image) if per_image else None)
        except Exception as error:  # noqa: BLE001 - shown as a message, the page stays usable
            status.update(label="Encoding failed", state="error", expanded=True)
            show_error(error)
            return
        ws.load(bundle, source.name, Path(bundle.metadata["image_root"]), random_weights=weights == RANDOM,
                skipped=report.skipped)
        ws.encoded_here = True
        status.update(label="Encoded: " + report.summary().splitlines()[0], state="complete", expanded=False)
    st.rerun()  # the banner at the top of every page must reflect the new data


def encode_form() -> None:
    st.radio("Preset", [CUSTOM, *PRESETS], horizontal=True, key="preset", on_change=apply_preset,
             format_func=lambda name: name if name == CUSTOM else f"{name}: {PRESETS[name].description}",
             help="Sets the image limit, the banks and the templates below; each can still be changed.")
    st.markdown("**Images**")
    spec = image_spec()
    # no value= on the widgets a preset sets: their value lives in the session state (0 is the minimum)
    limit = int(st.number_input("At most this many images (0: all; a subset stays balanced over classes)",
                                min_value=0, max_value=10**7, step=100, key="limit"))
    if spec is None:
        return
    source = None
    with user_errors(), st.spinner("Listing the images…"):
        # listing is cheap but a zip or benchmark is unpacked once: keep the last listing per choice
        source = views.image_source_preview(spec, limit or None)
    if source is None:
        return
    show_source(source)
    weights, model, pretrained, device = model_choice()
    st.markdown("**Text banks**")
    nouns = text_bank("nouns", {"wordnet": "WordNet nouns (146,347 lemma-sense pairs)",
                                "imagenet": "ImageNet-1K class names (1,000)"})
    captions, per_image = caption_bank()
    max_captions = int(st.number_input("Keep the first this many captions (0: all)", min_value=0,
                                       max_value=10**7, step=1000, key="max-captions"))
    st.session_state.setdefault("templates", len(TAC_TEMPLATES))
    templates = int(st.slider("Prompt templates averaged per noun (TAC uses all 7; 1 is 7× faster)", 1,
                              len(TAC_TEMPLATES), key="templates"))
    if st.button("Estimate each preset's time on this device", key="estimate",
                 help="Encodes a few images and texts with an untrained copy of the architecture (its speed "
                      "does not depend on the weights) and scales up; cached work is not counted."):
        with user_errors(), st.spinner("Measuring the encoder on a sample…"):
            st.dataframe(views.preset_estimates(spec, source, model, device), hide_index=True)
    ready = nouns is not None and captions is not None and (weights == RANDOM or pretrained is not None)
    if st.button("Encode", type="primary", disabled=not ready, key="encode"):
        encode(spec, source, weights, model, pretrained, device, nouns, captions, per_image, limit, templates,
               max_captions)


def recorded_pictures(bundle, bundle_path: Path | None) -> tuple[Path | None, str]:
    """The image folder the bundle's metadata records, when it is readable here; else None and why not."""
    if not bundle.metadata.get("image_root"):
        return None, ""
    recorded = image_root_of(bundle.metadata, bundle_path)
    if recorded is None:
        return None, (f"the bundle's image folder {bundle.metadata['image_root']} is relative to where the bundle "
                      "was, which an upload does not say; give the image folder above")
    try:
        return resolve_allowed_path(recorded, allowed_roots()), ""
    except CaeError as error:
        return None, f"the bundle's recorded image folder cannot be used: {error}"


def load_bundle_form() -> None:
    how = st.radio("Bundle", [UPLOAD, SERVER_FILE], horizontal=True, key="bundle-how")
    upload = None
    if how == UPLOAD:
        upload = st.file_uploader("Features bundle (.npz)", type="npz", key="bundle-upload")
        bundle_path = saved_upload(upload) if upload else None
    else:
        bundle_path = server_path("Features bundle (.npz) on the server", "bundle-path")
    image_folder = server_path("Image folder the bundle's image_ids are relative to (optional, for pictures)",
                               "bundle-images")
    untrained = st.checkbox("These embeddings come from random weights", key="bundle-random",
                            help="Ticked automatically when the bundle's metadata says so.")
    if not st.button("Load the bundle", type="primary", disabled=bundle_path is None, key="load-bundle"):
        return
    bundle = None
    with user_errors():
        bundle = load_bundle(bundle_path)
    if bundle is None:
        return
    note = ""
    if image_folder is None:
        # an encoded bundle names its image folder; a relative one is beside the bundle file (unknown for an upload)
        image_folder, note = recorded_pictures(bundle, bundle_path if how == SERVER_FILE else None)
    random_weights = untrained or has_random_weights(bundle.metadata)
    name = bundle.metadata.get("image_source") or (upload.name if upload is not None else bundle_path.name)
    # the note is kept with the data: the rerun below would erase a message shown now
    ws.load(bundle, str(name), image_folder, random_weights, pictures_note=note, bundle_path=bundle_path)
    st.rerun()  # the banner at the top of every page must reflect the new data


encode_tab, bundle_tab = st.tabs(["Encode images", "Load a features bundle"])
with encode_tab:
    encode_form()
with bundle_tab:
    load_bundle_form()

if ws.bundle is not None:
    st.divider()
    bundle = ws.bundle
    st.subheader(f"Loaded: {escape_markdown(ws.dataset_name or 'features bundle')}")
    st.markdown(f"{bundle.n_images:,} images · {len(bundle.nouns):,} nouns · {len(bundle.captions):,} captions · "
                f"dimension {bundle.image_embeddings.shape[1]} · "
                f"model {escape_markdown(bundle.metadata.get('model', 'unknown'))}"
                + (" with random weights" if ws.random_weights else ""))
    counts_column, grid_column = st.columns([1, 3])
    if bundle.labels is not None:
        counts_column.dataframe(views.class_counts(bundle.labels, bundle.class_names), hide_index=True, height=300)
    sample = views.spread_sample(bundle.labels if bundle.labels is not None else [-1] * bundle.n_images, 16)
    with grid_column:
        image_grid([ws.image_path(int(i)) for i in sample], [str(bundle.image_ids[i]) for i in sample], columns=8,
                   size=96)
    if ws.pictures_note:
        st.warning(f"No pictures: {escape_markdown(ws.pictures_note)}", icon=":material/hide_image:")
    if ws.skipped:
        with st.expander(f"{len(ws.skipped)} files skipped"):
            st.dataframe(views.skipped_table(ws.skipped), hide_index=True)
    st.markdown("**Next: cluster** (CAE and its baselines, run once and kept for every page)")
    run_controls(ws, "dataset")
    if ws.results:
        st.page_link(SEMANTIC_SPACE_PAGE, label="Continue with the semantic space", icon=":material/arrow_forward:")
