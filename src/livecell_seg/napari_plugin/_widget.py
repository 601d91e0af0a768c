"""The napari dock widget (Plugins > livecell-seg > Segment cells).

It segments the chosen Image layer (by default the one selected in the layer list) with the bundled
model or a model folder and adds a Labels layer ``<image> cells`` (plus the probability maps on
request). The network runs in a worker thread (``napari.qt.threading.thread_worker``) with a
progress bar, so the viewer stays responsive; its maps are cached per (image content, model, TTA,
zoom), so changing a post-processing field re-runs only the watershed. A 2-D image is one plane; a stack
(time, z: any leading axes) is segmented plane by plane; RGB is converted to grey.

The zoom is the model's default (what ``predict`` uses: ``auto`` for the bundled model) unless
chosen otherwise. The work itself is :mod:`livecell_seg.interactive` (the web app's functions):
``network_maps`` (network at a zoom), ``segment`` (watershed), ``param_specs`` (which parameters a head uses).

**Fine-tune on corrections**: after correcting a ``<image> cells`` Labels layer (paint, erase, fill,
split, merge with napari's label tools), the button fine-tunes the chosen model on every corrected
image (each Image layer with a ``<image> cells`` layer; every plane of a stack that has cells) with
:func:`livecell_seg.training.finetune.finetune` in a worker thread (progress bar, Stop keeps a usable
folder), saves the new model folder where the user chose, and offers it for the next image.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from .. import interactive as logic
from ..errors import LivecellError
from ..io import _to_grey
from ..model.folder import LoadedModel, read_model_config, read_params, read_postprocess
from ..model.heads import head_channels

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.postprocess import PostprocessParams
    from ..model.folder import LoadedModel

BUNDLED = "bundled model"
FOLDER = "model folder"
#: key of the ``metadata`` entry that marks the layers this widget adds
OUTPUT_TAG = "livecell_seg"
#: maps kept in memory, most recent first (each: planes x channels x H x W float32)
MAPS_CACHE_SIZE = 4


def image_planes(data: Any, rgb: bool = False, name: str = "image") -> tuple[np.ndarray, tuple[int, ...]]:
    """``(planes (N, H, W), leading shape)`` of an Image layer's data.

    A 2-D image is one plane (leading shape ``()``); leading axes (time, z, ...) are flattened;
    an RGB(A) layer is converted to grey as ``predict`` does. Raises :class:`LivecellError`.
    """

    arr = np.asarray(data)
    if rgb:
        if arr.ndim < 3:
            raise LivecellError(f"{name}: RGB layer with shape {arr.shape}")
        lead = arr.shape[:-3]
        flat = arr.reshape((-1, *arr.shape[-3:]))
        planes = np.stack([_to_grey(p, Path(name)) for p in flat])
    else:
        if arr.ndim < 2:
            raise LivecellError(f"{name}: a 1-D layer cannot be segmented")
        lead = arr.shape[:-2]
        planes = arr.reshape((-1, *arr.shape[-2:]))
    if min(planes.shape[-2:]) < 8:
        raise LivecellError(f"{name}: image too small ({planes.shape[-1]}x{planes.shape[-2]} pixels)")
    if not (np.issubdtype(planes.dtype, np.integer) or np.issubdtype(planes.dtype, np.floating)):
        raise LivecellError(f"{name}: unsupported pixel type {planes.dtype}")
    return planes, tuple(lead)


def data_key(planes: np.ndarray) -> str:
    """Cache key of image content (shape, dtype and a hash of the pixels)."""
    h = hashlib.sha1(np.ascontiguousarray(planes).view(np.uint8).ravel())
    return f"{planes.shape}|{planes.dtype}|{h.hexdigest()[:16]}"


def compute_stack_maps(
    model: LoadedModel,
    planes: np.ndarray,
    tta: bool | str = False,
    scale: float | str = 1.0,
    quality: bool = False,
):  # noqa: ANN201
    """Generator: yields after each plane's network run, returns ``((N, C, H, W) float32 maps,
    [zoom per plane], mirrored maps or None)``; ``scale`` as in
    :func:`livecell_seg.interactive.network_maps` (``"auto"``: the zoom ``predict`` picks, per plane);
    ``quality``: also the maps of each mirrored plane at its zoom (:func:`logic.mirrored_maps`),
    for the quality estimate."""
    out, zooms, mirrored = [], [], []
    for p in planes:
        maps, _seconds, zoom = logic.network_maps(model, p, tta, scale)
        out.append(maps)
        zooms.append(zoom)
        if quality:
            mirrored.append(logic.mirrored_maps(model, p, tta, zoom))
        yield len(out)
    return np.stack(out), zooms, (np.stack(mirrored) if quality else None)


def stack_quality(
    labels: np.ndarray, mirrored: np.ndarray, head: str, params: PostprocessParams
) -> list[float]:
    """The quality estimate of each plane's labels (:func:`livecell_seg.interactive.quality_of`)."""
    return [logic.quality_of(lab, m, head, params) for lab, m in zip(labels, mirrored)]


def quality_text(qualities: list[float] | None) -> str:
    """The status's quality part: ``; quality 0.87`` (one plane) or the lowest and its plane."""
    if not qualities:
        return ""
    if len(qualities) == 1:
        return f"; quality {qualities[0]:.2f}"
    worst = int(np.argmin(qualities))
    return f"; quality {min(qualities):.2f}-{max(qualities):.2f} (lowest: plane {worst + 1})"


def segment_stack(maps: np.ndarray, head: str, params: PostprocessParams) -> np.ndarray:
    """Watershed of every plane's maps: ``(N, H, W)`` int32 labels (numbered 1..n per plane)."""
    return np.stack([logic.segment(m, head, params).astype(np.int32, copy=False) for m in maps])


class SegmentWidget(Container):
    """Segment cells in an Image layer; post-processing fields re-run only the watershed."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._models: dict[str, LoadedModel] = {}
        self._maps_cache: OrderedDict[tuple[str, ...], tuple[np.ndarray, list[float], np.ndarray | None]] = (
            OrderedDict()
        )
        self._worker: Any = None
        self._pending_watershed = False
        #: what the shown Labels layer was made from: image layer, maps key, lead shape
        self._last: dict[str, Any] | None = None
        self._model_dir: Path | None = None
        self._model_key = ""
        self._head = ""
        self._base_params: PostprocessParams | None = None
        #: how many planes this widget ran through the network (maps are cached; tests check it)
        self.network_runs = 0
        #: the quality estimate of each plane of the shown labels (None: not estimated)
        self.qualities: list[float] | None = None

        self.image = ComboBox(label="Image", choices=self._image_layers)
        self.model_kind = ComboBox(label="Model", choices=[BUNDLED, FOLDER], value=BUNDLED)
        self.model_dir = FileEdit(label="Model folder", mode="d", visible=False)
        self.model_info = Label(value="")
        self.tta = ComboBox(label="Test-time augm.", choices=list(logic.TTA_CHOICES), value="none")
        #: the zoom the network sees the image at; the model's default (``predict``'s) first
        self.zoom = ComboBox(label="Zoom", choices=list(logic.ZOOM_CHOICES), value="1 (as is)")
        self.show_maps = CheckBox(text="Add probability maps", value=False)
        #: the quality estimate of ``predict --quality`` (one more network pass per plane)
        self.quality = CheckBox(text="Estimate quality (one more network pass)", value=True)
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(label="Progress", min=0, max=1, value=0)
        self.status = Label(value="")
        self.params_box = Container(labels=True, label="")
        self.reset_button = PushButton(text="Reset to the model's values")
        #: fine-tuning on the corrected ``<image> cells`` layers
        self.ft_out = FileEdit(label="New model folder", mode="d")
        self.ft_steps = SpinBox(label="Steps", min=1, max=5000, value=150)
        self.ft_button = PushButton(text="Fine-tune on corrections")
        self.ft_stop = PushButton(text="Stop fine-tuning", visible=False)
        self.ft_use = PushButton(text="Use the fine-tuned model", visible=False)
        #: the last fine-tuned model folder (None before the first)
        self.finetuned: Path | None = None
        #: the fine-tuning recipe (None: :class:`~livecell_seg.training.finetune.Recipe`'s defaults)
        self.ft_recipe: Any = None
        self._ft_stop_requested = threading.Event()
        self.extend(
            [
                self.image,
                self.model_kind,
                self.model_dir,
                self.model_info,
                self.tta,
                self.zoom,
                self.show_maps,
                self.quality,
                self.run_button,
                self.progress,
                self.status,
                Label(value="<b>Post-processing</b> (re-runs only the watershed)"),
                self.params_box,
                self.reset_button,
                Label(value="<b>Fine-tune</b> on the corrected cells layers"),
                self.ft_out,
                self.ft_steps,
                self.ft_button,
                self.ft_stop,
                self.ft_use,
            ]
        )
        self.model_kind.changed.connect(self._on_model_changed)
        self.model_dir.changed.connect(self._on_model_changed)
        self.run_button.changed.connect(self.run)
        self.reset_button.changed.connect(self.reset_params)
        self.ft_button.changed.connect(self.finetune)
        self.ft_stop.changed.connect(self.stop_finetune)
        self.ft_use.changed.connect(self.use_finetuned)
        layers = self.viewer.layers
        for ev in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            ev.connect(self._refresh_images)
        layers.selection.events.active.connect(self._follow_selection)
        self._refresh_images()
        self._on_model_changed()

    # ------------------------------------------------------------------ layers
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and OUTPUT_TAG not in layer.metadata  # not our own maps
        ]

    def _refresh_images(self, _event: Any = None) -> None:
        current = self.image.value
        self.image.reset_choices()
        choices = list(self.image.choices)
        if not choices:
            return
        if current is not None and any(c is current for c in choices):
            self.image.value = current
        else:
            active = self.viewer.layers.selection.active
            self.image.value = active if any(c is active for c in choices) else choices[-1]

    def _follow_selection(self, event: Any = None) -> None:
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and OUTPUT_TAG not in active.metadata:
            self.image.value = active

    # ------------------------------------------------------------------ model and parameters
    def _on_model_changed(self, _value: Any = None) -> None:
        """Read the chosen model folder's head and ``postprocess.json`` (no torch) and rebuild the fields."""

        self.model_dir.visible = self.model_kind.value == FOLDER
        folder = str(self.model_dir.value or "") if self.model_kind.value == FOLDER else None
        try:
            if folder is not None and folder in ("", "."):
                raise LivecellError("choose a model folder (model.pt, config.json)")
            d = logic.resolve_model_dir(folder)
            _cfg, mcfg = read_model_config(d)
            base = read_params(d)  # one-line InputFileError for an invalid postprocess.json
        except LivecellError as e:
            self._model_dir, self._model_key, self._head, self._base_params = None, "", "", None
            self.model_info.value = ""
            self.run_button.enabled = False
            self._set_status(str(e))
            self.params_box.clear()
            return
        self._model_dir, self._model_key, self._head, self._base_params = (
            d,
            logic.model_key(d),
            mcfg.head,
            base,
        )

        zooms = logic.zoom_choices(LoadedModel(net=None, model_config=mcfg, path=d))
        self.zoom.choices = zooms
        self.zoom.value = zooms[0]  # what `predict` uses for this model by default
        who = "bundled model" if folder is None else d.name
        tuned = "tuned post-processing" if read_postprocess(d) else "default post-processing"
        self.model_info.value = f"{who}: {mcfg.arch}, head {mcfg.head}, {tuned}"
        self.run_button.enabled = True
        self._set_status("")
        self._build_param_fields()

    def _build_param_fields(self) -> None:
        self.params_box.clear()
        if self._base_params is None:
            return
        base = self._base_params.to_dict()
        fields = []
        for spec in logic.param_specs(self._head):
            v = base[spec.name]
            if isinstance(v, bool):
                w = CheckBox(name=spec.name, text=spec.label, value=v, tooltip=spec.help)
            elif isinstance(v, int):
                lo, hi = logic.slider_range(spec, v)
                w = SpinBox(
                    name=spec.name, label=spec.label, value=v, min=int(lo), max=int(hi), step=int(spec.step)
                )
            else:
                lo, hi = logic.slider_range(spec, float(v))
                w = FloatSpinBox(
                    name=spec.name, label=spec.label, value=float(v), min=lo, max=hi, step=spec.step
                )
            w.tooltip = spec.help
            w.changed.connect(self._on_param_changed)
            fields.append(w)
        self.params_box.extend(fields)

    def params(self) -> PostprocessParams:
        """The post-processing parameters now in the fields (the model's own for the others)."""
        if self._base_params is None:
            raise LivecellError("no model")
        return logic.params_with(self._base_params, {w.name: w.value for w in self.params_box})

    def set_param(self, name: str, value: Any) -> None:
        """Set one post-processing field (as a user would), which re-runs the watershed."""
        next(w for w in self.params_box if w.name == name).value = value

    def reset_params(self, _value: Any = None) -> None:
        """Put the fields back to the model's ``postprocess.json`` and re-run the watershed."""
        self._build_param_fields()
        self._on_param_changed()

    def _on_param_changed(self, _value: Any = None) -> None:
        if self._last is None or self._last["maps_key"] not in self._maps_cache:
            return
        if self.busy:
            self._pending_watershed = True
            return
        self._start(self._last["layer"], watershed_only=True)

    # ------------------------------------------------------------------ running
    @property
    def busy(self) -> bool:
        """Whether a worker is running."""
        return self._worker is not None

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _get_model(self) -> LoadedModel:
        if self._model_key not in self._models:
            assert self._model_dir is not None
            self._models.clear()  # one model in memory at a time
            self._models[self._model_key] = logic.load_model(self._model_dir)
        return self._models[self._model_key]

    def run(self, _value: Any = None) -> Any:
        """Segment the chosen image layer in a worker thread; returns the worker (None if nothing to do)."""
        layer = self.image.value
        if layer is None:
            self._set_status("No Image layer: open an image (or File > Open Sample > livecell-seg).")
            return None
        if self.busy:
            self._set_status("Busy: wait for the current run to finish.")
            return None
        return self._start(layer, watershed_only=False)

    def _start(self, layer: Any, watershed_only: bool) -> Any:
        from napari.qt.threading import thread_worker

        if self._model_dir is None:
            self._set_status("Choose a model first.")
            return None
        try:
            if getattr(layer, "multiscale", False):
                raise LivecellError(
                    f"{layer.name}: multiscale images are not supported; use `livecell-seg predict`"
                )
            planes, lead = image_planes(layer.data, bool(getattr(layer, "rgb", False)), layer.name)
            params = self.params()
        except LivecellError as e:
            self._set_status(str(e))
            return None
        tta, zoom, quality = str(self.tta.value), str(self.zoom.value), bool(self.quality.value)
        maps_key = (data_key(planes), self._model_key, tta, zoom, "quality" if quality else "")
        cached = self._maps_cache.get(maps_key)
        head, n = self._head, len(planes)
        get_model = self._get_model

        def job():  # noqa: ANN202 - generator: yields (done, total, message), returns (maps, labels)
            total = (0 if cached is not None else n + 1) + 1
            maps, zooms, mirrored = cached if cached is not None else (None, None, None)
            if maps is None:
                yield 0, total, "loading the model…"
                model = get_model()
                gen = compute_stack_maps(
                    model, planes, logic.TTA_CHOICES[tta], logic.ZOOM_CHOICES[zoom], quality=quality
                )
                while True:
                    try:
                        done = next(gen)
                    except StopIteration as stop:
                        maps, zooms, mirrored = stop.value
                        break
                    self.network_runs += 1
                    yield done, total, f"network: plane {done}/{n}" if n > 1 else "network done"
            yield total - 1, total, "watershed…"
            labels = segment_stack(maps, head, params)
            qualities = stack_quality(labels, mirrored, head, params) if mirrored is not None else None
            return maps, zooms, labels, mirrored, qualities

        worker = thread_worker(job, start_thread=False)()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda res: self._on_done(layer, maps_key, lead, res))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self._set_status("watershed…" if cached is not None else "starting…")
        worker.start()
        return worker

    def _on_progress(self, value: tuple[int, int, str]) -> None:
        done, total, message = value
        self.progress.max = total
        self.progress.value = done
        self._set_status(message)

    def _on_done(self, layer: Any, maps_key: tuple[str, ...], lead: tuple[int, ...], res: Any) -> None:
        maps, zooms, labels, mirrored, qualities = res
        self.qualities = qualities
        self._maps_cache[maps_key] = (maps, zooms, mirrored)
        self._maps_cache.move_to_end(maps_key, last=False)
        while len(self._maps_cache) > MAPS_CACHE_SIZE:
            self._maps_cache.popitem(last=True)
        self._last = {"layer": layer, "maps_key": maps_key, "lead": lead}
        shape = (*lead, *labels.shape[-2:])
        self._show_labels(layer, labels.reshape(shape))
        if self.show_maps.value:
            self._show_maps(layer, maps, lead)
        cells = int(sum(len(np.unique(p[p > 0])) for p in labels))
        self.progress.value = self.progress.max
        where = f" in {len(labels)} planes" if len(labels) > 1 else ""
        lo, hi = min(zooms), max(zooms)
        at = "" if lo == hi == 1.0 else f" (zoom {lo:.2f})" if lo == hi else f" (zoom {lo:.2f}-{hi:.2f})"
        self._set_status(f"{cells} cells{where}{at}{quality_text(qualities)}")

    @staticmethod
    def _layer_kwargs(layer: Any, ndim: int) -> dict[str, Any]:
        """Scale and translation of the image layer, so the new layers lie on it."""
        return {"scale": tuple(layer.scale)[-ndim:], "translate": tuple(layer.translate)[-ndim:]}

    def _show_labels(self, layer: Any, labels: np.ndarray) -> None:
        name = f"{layer.name} cells"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = labels
        else:
            self.viewer.add_labels(
                labels, name=name, metadata={OUTPUT_TAG: "labels"}, **self._layer_kwargs(layer, labels.ndim)
            )

    def _show_maps(self, layer: Any, maps: np.ndarray, lead: tuple[int, ...]) -> None:

        for c, ch in enumerate(head_channels(self._head)):
            data = maps[:, c].reshape((*lead, *maps.shape[-2:]))
            name = f"{layer.name} {logic.CHANNEL_TITLES.get(ch, ch)}"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = data
            else:
                self.viewer.add_image(
                    data,
                    name=name,
                    colormap="magma",
                    contrast_limits=(0.0, 1.0),
                    blending="additive",
                    visible=c == 0,
                    metadata={OUTPUT_TAG: ch},
                    **self._layer_kwargs(layer, data.ndim),
                )
        # keep the labels on top of the maps
        lname = f"{layer.name} cells"
        if lname in self.viewer.layers:
            layers = self.viewer.layers
            layers.move(layers.index(lname), len(layers))

    def _on_error(self, exc: BaseException) -> None:
        msg = logic.error_message(exc)
        self._set_status(msg)
        try:
            from napari.utils.notifications import show_error

            show_error(f"livecell-seg: {msg}")
        except Exception:  # noqa: BLE001 - a notification is a nicety
            pass

    # ------------------------------------------------------------------ fine-tuning
    def corrections(self) -> list[Any]:
        """The corrected images: every Image layer with a ``<image> cells`` Labels layer of the same
        shape, one :class:`~livecell_seg.training.finetune.CorrectedImage` per plane that has cells."""
        from napari.layers import Image, Labels

        from ..training.finetune import CorrectedImage

        out = []
        for layer in self.viewer.layers:
            cells = f"{layer.name} cells"
            if not isinstance(layer, Image) or cells not in self.viewer.layers:
                continue
            lab_layer = self.viewer.layers[cells]
            if not isinstance(lab_layer, Labels):
                continue
            planes, lead = image_planes(layer.data, bool(getattr(layer, "rgb", False)), layer.name)
            labels = np.asarray(lab_layer.data)
            if labels.shape != (*lead, *planes.shape[-2:]):
                raise LivecellError(
                    f"{cells}: its shape {labels.shape} differs from {layer.name}'s {(*lead, *planes.shape[-2:])}"
                )
            labels = labels.reshape(len(planes), *planes.shape[-2:])
            for i, (img, lab) in enumerate(zip(planes, labels)):
                if lab.max() > 0:
                    name = layer.name if len(planes) == 1 else f"{layer.name} plane {i}"
                    out.append(CorrectedImage(name, img, lab.astype(np.int32)))
        return out

    def finetune(self, _value: Any = None) -> Any:
        """Fine-tune the chosen model on the corrections in a worker thread; returns the worker."""
        from napari.qt.threading import thread_worker

        from ..training.finetune import finetune

        if self.busy:
            self._set_status("Busy: wait for the current run to finish.")
            return None
        if self._model_dir is None:
            self._set_status("Choose a model first.")
            return None
        out = str(self.ft_out.value or "")
        if out in ("", "."):
            self._set_status("Choose a folder for the new model first.")
            return None
        try:
            examples = self.corrections()
        except LivecellError as e:
            self._set_status(str(e))
            return None
        if not examples:
            self._set_status("No corrected cells: segment an image and correct its cells layer first.")
            return None
        base, steps, out_dir, recipe = self._model_dir, int(self.ft_steps.value), Path(out), self.ft_recipe
        stop = self._ft_stop_requested
        stop.clear()

        def job():  # noqa: ANN202 - generator: yields (done, total, message), returns the new folder
            # finetune reports progress from its own loop: it runs in a thread of its own here and
            # this generator hands its progress to the Qt side
            events: queue.Queue = queue.Queue()
            result: dict[str, Any] = {}

            def target() -> None:
                try:
                    result["path"] = finetune(
                        examples,
                        out_dir,
                        base,
                        steps=steps,
                        recipe=recipe,
                        progress=lambda done, total: events.put((done, total)),
                        should_stop=stop.is_set,
                    )
                except BaseException as e:  # noqa: BLE001 - handed to the worker's errored signal
                    result["error"] = e
                finally:
                    events.put(None)

            yield 0, steps, f"fine-tuning on {len(examples)} corrected image(s)…"
            runner = threading.Thread(target=target, name="livecell-seg finetune", daemon=True)
            runner.start()
            while (item := events.get()) is not None:
                done, total = item
                yield done, total, f"fine-tuning: step {done}/{total}"
            runner.join()
            if "error" in result:
                raise result["error"]
            return result["path"]

        worker = thread_worker(job, start_thread=False)()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_finetuned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.ft_button.enabled = False
        self.ft_stop.visible = True
        self.ft_use.visible = False
        worker.start()
        return worker

    def stop_finetune(self, _value: Any = None) -> None:
        """Ask the running fine-tuning to stop after its current step (the folder stays usable)."""
        self._ft_stop_requested.set()
        self._set_status("stopping after this step…")

    def _on_finetuned(self, path: Any) -> None:
        self.finetuned = Path(path)
        self.progress.value = self.progress.max
        stopped = " (stopped early)" if self._ft_stop_requested.is_set() else ""
        self._set_status(f"fine-tuned model saved to {self.finetuned}{stopped}: use it for the next image?")
        self.ft_use.visible = True

    def use_finetuned(self, _value: Any = None) -> None:
        """Segment with the last fine-tuned model from now on."""
        if self.finetuned is None:
            return
        self.model_dir.value = self.finetuned
        self.model_kind.value = FOLDER
        self._on_model_changed()
        self.ft_use.visible = False

    def _on_finished(self) -> None:
        self._worker = None
        self.ft_button.enabled = True
        self.ft_stop.visible = False
        self.run_button.enabled = self._model_dir is not None
        if self._pending_watershed:
            self._pending_watershed = False
            self._on_param_changed()
