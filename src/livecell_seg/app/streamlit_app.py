"""The livecell-seg web page (Streamlit script; start it with ``livecell-seg app``).

Thin layout over :mod:`livecell_seg.interactive`. The network runs once per (image, model, TTA):
its probability maps are cached, so moving a post-processing slider re-runs only the watershed.
Query parameter ``?sample=<file name>`` preselects a bundled sample image.
"""

from __future__ import annotations

import os
import time

import numpy as np
import streamlit as st

from livecell_seg import interactive as logic
from livecell_seg.app import MODEL_ENV
from livecell_seg.data import LIVECELL_PIXEL_SIZE_UM
from livecell_seg.model.heads import head_channels
from livecell_seg.progress import progress_bar

st.set_page_config(page_title="livecell-seg", page_icon="🔬", layout="wide")


# --------------------------------------------------------------------------------------------------
# caches: the model per folder (and file times), decoded images and maps per content hash
# --------------------------------------------------------------------------------------------------
@st.cache_resource(max_entries=3, show_spinner=False)
def get_model(model_key: str, _model_dir):  # noqa: ANN001, ANN201
    return logic.load_model(_model_dir)


@st.cache_resource(show_spinner=False)
def page_cache() -> logic.MemoryCache:
    """One cache for the whole server, bounded by memory ($LIVECELL_APP_CACHE_MB), not by count."""
    return logic.MemoryCache(logic.cache_budget_bytes())


def get_image(name: str, image_key: str, _data: bytes) -> np.ndarray:
    return page_cache().get(("image", name, image_key), lambda: logic.decode_image(name, _data))


def get_maps(
    image_key: str, model_key: str, tta: str, zoom: str, _model, _image
) -> tuple[np.ndarray, float, float]:  # noqa: ANN001
    def compute() -> tuple[np.ndarray, float, float]:
        # how many times this session ran the network (the maps are cached; tests check it)
        st.session_state["network_runs"] = st.session_state.get("network_runs", 0) + 1
        return logic.network_maps(_model, _image, logic.TTA_CHOICES[tta], logic.ZOOM_CHOICES[zoom])

    return page_cache().get(("maps", image_key, model_key, tta, zoom), compute)


def get_labels(maps_key: str, params_json: str, head: str, _maps, _params) -> np.ndarray:  # noqa: ANN001
    return page_cache().get(
        ("labels", maps_key, params_json, head), lambda: logic.segment(_maps, head, _params)
    )


def get_sample_gt(name: str, image_key: str, _image) -> np.ndarray | None:  # noqa: ANN001
    return page_cache().get(("gt", name, image_key), lambda: logic.sample_ground_truth(name, _image))


def get_outputs(labels_key: str, color_by: str, _image, _labels, _fg) -> dict:  # noqa: ANN001
    """Scores, overlay, table and download payloads of one segmentation."""

    def compute() -> dict:
        scores = logic.scores_of(_labels, _fg)
        ov = logic.overlay(_image, _labels, color_by, scores)
        return {
            "scores": scores,
            "overlay": ov,
            "table": logic.measurements(_labels, _image, scores),
            "labels_tif": logic.labels_tiff_bytes(_labels),
            "overlay_png": logic.png_bytes(ov),
            "hist": logic.area_histogram_png(logic.cell_areas(_labels)),
        }

    return page_cache().get(("outputs", labels_key, color_by), compute)


@st.cache_data(max_entries=16, show_spinner=False)
def get_curves(tables_key: str, _view) -> bytes:  # noqa: ANN001
    return logic.timecourse_curves_png(_view)


def fail(message: str) -> None:
    """Show a one-line error in the page and stop this run."""
    st.error(message)
    st.stop()


# --------------------------------------------------------------------------------------------------
# sidebar: image, model, post-processing
# --------------------------------------------------------------------------------------------------
st.title("livecell-seg · label-free cell segmentation")
st.caption(
    "U-Net probability maps + seeded watershed on phase-contrast images (LIVECell). "
    "The network runs once per image; the post-processing sliders re-run only the watershed."
)

samples = {p.name: p for p in logic.sample_images()}
query_sample = st.query_params.get("sample")
items: list[tuple[str, bytes]] = []
tc_error: str | None = None
with st.sidebar:
    view = st.radio("View", ["Single images", "Time course"], horizontal=True, key="view")
    st.header("Image" if view == "Single images" else "Frames")
    if view == "Time course":
        tc_source = st.radio("Frames from", ["Folder", "Upload"], horizontal=True, key="tc_source")
        if tc_source == "Folder":
            tc_folder = st.text_input("Folder on this computer", key="tc_folder")
            if tc_folder.strip():
                try:
                    items = [(str(p), p.read_bytes()) for p in logic.folder_frames(tc_folder)]
                except Exception as e:  # noqa: BLE001
                    tc_error = logic.error_message(e)
        else:
            tc_uploads = st.file_uploader(
                "Frames of one or more wells (LIVECell/Incucyte names, e.g. A172_Phase_C7_1_02d16h00m_2.tif)",
                type=list(logic.UPLOAD_TYPES),
                accept_multiple_files=True,
                key="tc_upload",
            )
            items = [(f.name, f.getvalue()) for f in tc_uploads or []]
        tc_pattern = st.text_input(
            "Name pattern (optional regex)",
            key="tc_pattern",
            help="named groups time (02d04h00m, 12h30m or hours) or days/hours/minutes; optionally "
            "cell_type, well, field, crop. Empty: LIVECell/Incucyte names.",
        )
        tc_pixel = st.number_input(
            "Pixel size (µm, 0 = unknown)", 0.0, 100.0, LIVECELL_PIXEL_SIZE_UM, 0.01, key="tc_pixel"
        )
    else:
        source = st.radio("Source", ["Sample image", "Upload"], horizontal=True, key="source")
        if source == "Sample image":
            if not samples:
                st.warning("The bundled sample images are missing; upload an image instead.")
            else:
                names = list(samples)
                chosen = st.selectbox(
                    "LIVECell sample (with ground truth)",
                    names,
                    index=names.index(query_sample) if query_sample in samples else 0,
                    key="sample",
                )
                items = [(chosen, samples[chosen].read_bytes())]
        else:
            uploads = st.file_uploader(
                "Images (TIFF incl. LZW/16-bit, PNG, JPEG)",
                type=list(logic.UPLOAD_TYPES),
                accept_multiple_files=True,
                key="upload",
            )
            items = [(f.name, f.getvalue()) for f in uploads or []]

    st.header("Model")
    env_model = os.environ.get(MODEL_ENV, "")
    kind = st.radio(
        "Model",
        ["Bundled default", "Model folder"],
        index=1 if env_model else 0,
        horizontal=True,
        key="model_kind",
    )
    folder = ""
    if kind == "Model folder":
        folder = st.text_input("Model folder (model.pt, config.json)", value=env_model, key="model_dir")
    tta = st.selectbox("Test-time augmentation", list(logic.TTA_CHOICES), key="tta")

try:
    model_dir = logic.resolve_model_dir(folder if kind == "Model folder" else None)
    mkey = logic.model_key(model_dir)
    with st.spinner("Loading the model…"):
        model = get_model(mkey, model_dir)
    base_params = model.params  # its postprocess.json, else the defaults
except Exception as e:  # noqa: BLE001 - shown in the page, one line
    fail(logic.error_message(e))
head = model.head
channels = head_channels(head)

with st.sidebar:
    zooms = logic.zoom_choices(model)
    zoom = st.selectbox(
        "Zoom for the network",
        zooms,
        index=zooms.index("auto (cell size)") if "auto (cell size)" in zooms else 0,
        key="zoom",
        help="auto: segment at zoom 1 and, when the cells found are far from the size the model "
        "segments best, once more at the zoom that brings them there (predict --scale auto). "
        "Labels keep the image's size.",
    )
    st.caption(logic.describe_model(model))
    st.header("Post-processing")
    tag = logic.digest(mkey.encode())  # new model -> sliders start from its own values
    if st.button("Reset to the model's values", key=f"reset_{tag}"):
        for k in [k for k in st.session_state if str(k).startswith(f"pp_{tag}_")]:
            del st.session_state[k]
        st.rerun()
    values: dict[str, object] = {}
    base = base_params.to_dict()
    for spec in logic.param_specs(head):
        default = base[spec.name]
        key = f"pp_{tag}_{spec.name}"
        if isinstance(default, bool):
            values[spec.name] = st.checkbox(spec.label, value=default, help=spec.help, key=key)
        elif isinstance(default, int):
            lo, hi = logic.slider_range(spec, default)
            values[spec.name] = st.slider(
                spec.label, int(lo), int(hi), int(default), int(spec.step), help=spec.help, key=key
            )
        else:
            lo, hi = logic.slider_range(spec, float(default))
            values[spec.name] = st.slider(
                spec.label, float(lo), float(hi), float(default), float(spec.step), help=spec.help, key=key
            )
    params = logic.params_with(base_params, values)
    params_json = repr(sorted(params.to_dict().items()))
    st.header("Display")
    color_by = logic.COLOR_CHOICES[st.selectbox("Outline colours", list(logic.COLOR_CHOICES), key="color_by")]

# --------------------------------------------------------------------------------------------------
# main area
# --------------------------------------------------------------------------------------------------
if view == "Time course":
    if tc_error:
        fail(tc_error)
    if not items:
        st.info(
            "Choose a folder or upload the frames of a time lapse in the sidebar. Names like "
            "SkBr3_Phase_H3_2_02d04h00m_3.tif (cell type, well, field, time, crop) are grouped by well "
            "and time; other names need a pattern."
        )
        st.stop()
elif not items:
    st.info("Pick a sample image or upload images (TIFF incl. LZW and 16-bit, PNG, JPEG) in the sidebar.")
    st.stop()

images: list[tuple[str, str, np.ndarray]] = []
unreadable: list[str] = []  # time course: listed with the other skipped frames
for name, data in items:
    key = logic.digest(data)
    try:
        images.append((name, key, get_image(name, key, data)))
    except Exception as e:  # noqa: BLE001
        if view == "Time course":
            unreadable.append(logic.error_message(e, name))
        else:
            st.error(logic.error_message(e, name))
if not images:
    for m in unreadable:
        st.error(m)
    st.stop()


def run_image(name: str, key: str, image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float, float]:
    """Maps (cached network run), their seconds, labels (cached watershed) and watershed seconds."""
    with st.spinner(f"Running the network on {name}…"):
        maps, net_s, used = get_maps(key, mkey, tta, zoom, model, image)
    t0 = time.perf_counter()
    labels = get_labels(f"{key}|{mkey}|{tta}|{zoom}", params_json, head, maps, params)
    return maps, net_s, labels, time.perf_counter() - t0, used


if view == "Time course":
    try:
        frames, tc_skipped = logic.parse_frames([n for n, _k, _i in images], tc_pattern)
    except Exception as e:  # noqa: BLE001
        fail(logic.error_message(e))
    tc_skipped = unreadable + tc_skipped
    by_name = {n: (k, img) for n, k, img in images}
    tc_labels: dict[str, np.ndarray] = {}
    bar = st.progress(0.0, text="Segmenting the frames…")

    def show(done: int, total: int | None) -> None:
        bar.progress(done / (total or 1), text=f"Segmented {done} of {total} frames")

    for f in progress_bar(frames, show, "timecourse"):
        k, img = by_name[str(f.path)]
        try:
            tc_labels[str(f.path)] = run_image(str(f.path), k, img)[2]
        except Exception as e:  # noqa: BLE001
            tc_skipped.append(logic.error_message(e, str(f.path)))
    bar.empty()
    try:
        tcv = logic.timecourse_view(frames, tc_labels, tc_pixel or None, tc_skipped)
    except Exception as e:  # noqa: BLE001
        fail(logic.error_message(e))
    for m in tcv.skipped:
        st.warning(m)
    n_wells = len({(r["cell_type"], r["well"]) for r in tcv.per_image})
    st.subheader(
        f"Time course: {len(tcv.per_image)} frames, {n_wells} well(s), {len(tcv.per_well_time)} time point(s)"
    )
    tc_key = logic.digest(
        logic.timecourse_csv_bytes(tcv, "per_well_time") + logic.timecourse_csv_bytes(tcv, "growth")
    )
    st.image(get_curves(tc_key, tcv), width="stretch")
    st.markdown("**Growth per well** (log-linear fit over the exponential phase)")
    st.dataframe(logic.growth_table(tcv), hide_index=True)
    st.markdown("**Frames**")
    labels_of = {
        f"{r['cell_type']} {r['well']} · {r['time_h']:g} h · field {r['field']} crop {r['crop']}": r
        for r in tcv.per_image
    }
    shown_frame = st.select_slider("Frame", options=list(labels_of), key="tc_frame")
    row = labels_of[shown_frame]
    k, img = by_name[row["file"]]
    lab = tc_labels[row["file"]]
    fc = st.columns(4)
    fc[0].metric("Cells", f"{row['count']}")
    fc[1].metric("Confluence", f"{row['confluence']:.1f} %")
    fc[2].metric(
        "Cells per mm²",
        "–" if row["cells_per_mm2"] != row["cells_per_mm2"] else f"{row['cells_per_mm2']:.0f}",
    )
    fc[3].metric("Time", f"{row['time_h']:g} h")
    st.image(logic.overlay(img, lab, color_by), caption=row["file"], width="stretch")
    with st.expander("Per frame and per time point"):
        st.dataframe(tcv.per_image, hide_index=True)
        st.dataframe(tcv.per_well_time, hide_index=True)
    d = st.columns(3)
    for col, table in zip(d, ("per_image", "per_well_time", "growth")):
        col.download_button(
            f"{table}.csv",
            logic.timecourse_csv_bytes(tcv, table),
            f"{table}.csv",
            "text/csv",
            key=f"dl_{table}",
        )
    st.stop()

name = images[0][0]
try:
    if len(images) > 1:
        st.subheader(f"{len(images)} images")
        rows = []
        for name, key, image in images:
            _maps, _s, lab, _w, _z = run_image(name, key, image)
            areas = logic.cell_areas(lab)
            rows.append(
                {
                    "image": name,
                    "size": f"{image.shape[1]}×{image.shape[0]}",
                    "cells": int(areas.size),
                    "median area (px)": float(np.median(areas)) if areas.size else 0.0,
                }
            )
        st.dataframe(rows, hide_index=True)
        shown = st.selectbox(
            "Image shown", range(len(images)), format_func=lambda i: images[i][0], key="shown"
        )
        name, key, image = images[shown]
    else:
        name, key, image = images[0]

    maps, net_s, labels, ws_s, used_zoom = run_image(name, key, image)
    out = get_outputs(f"{key}|{mkey}|{tta}|{zoom}|{params_json}", color_by, image, labels, maps[0])
    gt = get_sample_gt(name, key, image)
except Exception as e:  # noqa: BLE001
    fail(logic.error_message(e, name))

areas = logic.cell_areas(labels)
st.subheader(name)
metrics_box = st.container()  # filled below, once the ground truth (if any) is known

panels = st.columns(2 + len(channels))
panels[0].image(logic.display_image(image), caption="image (normalized)", width="stretch")
for col, ch, m in zip(panels[1:], channels, maps):
    col.image(logic.colorize(m), caption=f"{logic.CHANNEL_TITLES.get(ch, ch)} probability", width="stretch")
panels[-1].image(out["overlay"], caption=f"{areas.size} cells", width="stretch")
st.caption(
    f"Network {net_s:.2f} s at zoom {used_zoom:.2f} (once per image and model, cached since) · "
    f"watershed {ws_s:.2f} s · "
    f"{image.dtype}, {image.shape[1]}×{image.shape[0]} pixels"
)

if gt is None:
    with st.expander("Score against your own ground truth"):
        gt_file = st.file_uploader(
            f"Ground-truth instance labels for {name} (integer TIFF/PNG, 0 = background)",
            type=["tif", "tiff", "png"],
            key=f"gt_{key}",
        )
        if gt_file is not None:
            try:
                gt = logic.read_ground_truth(gt_file.name, gt_file.getvalue(), image.shape)
            except Exception as e:  # noqa: BLE001
                st.error(logic.error_message(e, gt_file.name))

with metrics_box:
    cols = st.columns(5 if gt is not None else 3)
    cols[0].metric("Cells", f"{areas.size}")
    cols[1].metric("Median area", f"{np.median(areas):.0f} px" if areas.size else "–")
    cols[2].metric("Image", f"{image.shape[1]}×{image.shape[0]}", help=f"dtype {image.dtype}")
    if gt is not None:
        try:
            scores = logic.score_against(gt, labels, out["scores"])
        except Exception as e:  # noqa: BLE001
            fail(logic.error_message(e, name))
        cols[3].metric(
            "Mask AP / AP50",
            f"{scores['AP']:.1f} / {scores['AP50']:.1f}",
            help="COCO mask AP in percent against the ground truth, LIVECell protocol "
            "(IoU 0.50:0.95, up to 2000 detections, ranked by mean foreground probability)",
        )
        cols[4].metric(
            "F1 @ IoU 0.5",
            f"{scores['F1']:.3f}",
            help=f"precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
            f"{scores['gt_cells']} true cells",
        )

left, right = st.columns([2, 3])
with left:
    st.markdown("**Cell areas**")
    st.image(out["hist"], width="stretch")
with right:
    st.markdown("**Measurements** (one row per cell; pixels)")
    st.dataframe(out["table"], hide_index=True, height=320)

st.markdown("**Downloads**")
names = logic.download_names(name)
d = st.columns(5)
d[0].download_button("Label image (TIFF)", out["labels_tif"], names["labels"], "image/tiff", key="dl_labels")
d[1].download_button("Overlay (PNG)", out["overlay_png"], names["overlay"], "image/png", key="dl_overlay")
# the CSV, the ROI zip and the GeoJSON are built on click (deferred), so slider moves do not pay for them
d[2].download_button(
    "Measurements (CSV)",
    lambda: logic.measurements_csv_bytes(labels, image, out["scores"]),
    names["csv"],
    "text/csv",
    key="dl_csv",
)
d[3].download_button(
    "ImageJ ROIs (zip)", lambda: logic.rois_zip(labels), names["rois"], "application/zip", key="dl_rois"
)
d[4].download_button(
    "QuPath detections (GeoJSON)",
    lambda: logic.geojson(labels, image, out["scores"]),
    names["geojson"],
    "application/geo+json",
    key="dl_geojson",
    help="File > Import objects from file in QuPath: one detection per cell, with its measurements",
)
if gt is not None and get_sample_gt(name, key, image) is not None:
    st.caption(
        f"{name} is a LIVECell validation image (Edlund et al., Nature Methods 2021; CC BY-NC 4.0), "
        f"scored against its {int(np.unique(gt[gt > 0]).size)} annotated cells."
    )
