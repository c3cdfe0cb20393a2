"""Generators as ONNX graphs, run by onnxruntime: real-time generation off PyTorch.

**Which generators.** A generator supports export by having a method ``onnx_graph()`` that
returns an :class:`OnnxGraph`: the computation to export and example inputs naming its latents
(and, for recurrent models, the state carried from one call to the next). dcgan, mocogan,
videogan and videovae (its decoder) have one; a new model adds the method and nothing else
changes (:func:`supported` lists the registry names whose generators have it).

**The graph's interface** (the same for every model; names and shapes are stored in the file):

* inputs: the latents of ``G.make_latents`` by name (``z``; or ``content`` and ``motion``),
  then the state inputs (mocogan: ``h``, the GRU state, zeros to start), then ``labels`` (int64
  ``[batch]``) for class-conditional models; float32 everywhere else;
* outputs: ``video`` float32 ``[batch, C, T, H, W]`` in [-1, 1], then ``<state>_next``;
* batch (and, for models that extend, the frame count) are free axes.

**The file** is self-contained: the export's JSON config (name, options, meta) sits in the
ONNX metadata under ``kinema``, so :class:`OnnxGenerator` needs only the ``.onnx`` file; it
draws latents exactly as PyTorch generation does (``make_latents`` of a weightless copy of
the generator) and runs the network in onnxruntime on the CPU. It quacks like a generator, so
:func:`kinema.sample.stream.stream` uses it unchanged (``kinema stream --runtime onnx``).

The exporter is PyTorch's TorchScript-based one (``dynamo=False``): it needs nothing beyond the
``onnx`` package, and exports these models in about a second (the ``torch.export``-based one
took 10-25 s per model and needs ``onnxscript``).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from kinema.errors import KinemaError

META_KEY = "kinema"
FORMAT = "kinema-onnx"
FORMAT_VERSION = 1
OPSET = 17
# Frames of PyTorch and onnxruntime for the same latents agree this closely (float32 on a CPU;
# measured: ~1e-7 on random and trained weights at 32-64 px, see docs/onnx.md).
TOLERANCE = 1e-4


@dataclass
class OnnxGraph:
    """What a generator exports: ``fn(*latents, *state, [labels])`` -> video or (video, *state).

    ``latents`` / ``state``: example tensors (batch 1) by input name, in input order; ``dynamic``:
    input name -> {axis: axis name} for axes that may change size ("batch", "frames").
    """

    fn: Callable
    latents: dict[str, torch.Tensor]
    dynamic: dict[str, dict[int, str]]
    state: dict[str, torch.Tensor] = field(default_factory=dict)


class _Traced(nn.Module):
    """The generator (so its weights are the graph's) with the function to trace as forward."""

    def __init__(self, G: nn.Module, fn: Callable):
        super().__init__()
        self.G, self.fn = G, fn

    def forward(self, *args):
        return self.fn(*args)


def supported() -> list[str]:
    """Registry names of the models whose generators declare ``onnx_graph`` (built weightless)."""
    from kinema.models import MODELS, build

    names = []
    for name in MODELS:
        try:
            with torch.device("meta"):
                G = build(name).G
        except Exception:  # a model whose defaults cannot be built without storage is not listed
            continue
        if hasattr(G, "onnx_graph"):
            names.append(name)
    return names


def _graph(G, name: str) -> OnnxGraph:
    if not hasattr(G, "onnx_graph"):
        raise KinemaError(f"model {name} cannot be exported to ONNX (models that can: {', '.join(supported())})")
    return G.onnx_graph()


def _names(G, graph: OnnxGraph) -> tuple[list[str], list[str]]:
    inputs = list(graph.latents) + list(graph.state) + (["labels"] if G.num_classes else [])
    outputs = ["video"] + [f"{k}_next" for k in graph.state]
    return inputs, outputs


def _check_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise KinemaError("ONNX export needs the onnx package: pip install 'kinema[onnx]'") from None


def export_onnx(G: nn.Module, path, config: dict, force: bool = False) -> Path:
    """Write ``G`` (eval mode, float32, on the CPU) as a self-contained ONNX file, atomically.

    ``config``: the export's JSON config (``name``, ``kwargs``, ``meta``), stored in the file.
    """
    _check_onnx()
    import onnx

    from kinema.fsutil import atomic_write_bytes, refuse_existing

    path = Path(path)
    refuse_existing(path, force)
    name = str(config.get("name"))
    G = G.to("cpu", torch.float32).eval()
    graph = _graph(G, name)
    inputs, outputs = _names(G, graph)
    example = list(graph.latents.values()) + list(graph.state.values())
    dynamic = {k: dict(v) for k, v in graph.dynamic.items()}
    if G.num_classes:
        example.append(torch.zeros(1, dtype=torch.long))
        dynamic["labels"] = {0: "batch"}
    for k in graph.state:
        axes = graph.dynamic.get(k)
        if axes:
            dynamic[f"{k}_next"] = dict(axes)
    dynamic["video"] = {0: "batch", **({2: "frames"} if any("frames" in a.values() for a in graph.dynamic.values())
                                       else {})}
    module = _Traced(G, graph.fn).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, tuple(example), buf, dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True)
    G.eval()  # the exporter restores the wrapper's (training) mode on everything under it
    model = onnx.load_from_string(buf.getvalue())
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
            "latents": list(graph.latents), "state": {k: list(v.shape) for k, v in graph.state.items()},
            "state_batch_axis": {k: next((a for a, n in graph.dynamic.get(k, {}).items() if n == "batch"), None)
                                 for k in graph.state},
            "labels": bool(G.num_classes)}
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True)
    model.producer_name = "kinema"
    atomic_write_bytes(path, model.SerializeToString())
    return path


def _session(path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise KinemaError("running ONNX files needs onnxruntime: pip install 'kinema[onnx]'") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise KinemaError(f"{path}: not a loadable ONNX model ({first[:200]})") from None


class OnnxGenerator:
    """A kinema ONNX file behind the generator interface: ``make_latents``, ``G(latents, labels)``,
    ``advance`` for recurrent models, and the attributes samplers read.

    ``threads``: onnxruntime's intra-op threads (None: its default, all cores).
    """

    def __init__(self, path, threads: int | None = None):
        from kinema.models import build

        path = Path(path)
        if not path.is_file():
            raise KinemaError(f"{path}: ONNX file not found")
        _check_onnx()
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:
            raise KinemaError(f"{path}: not an ONNX file ({type(err).__name__})") from None
        props = {p.key: p.value for p in model.metadata_props}
        try:
            meta = json.loads(props[META_KEY])
            assert meta["format"] == FORMAT
        except (KeyError, ValueError, AssertionError, TypeError):
            raise KinemaError(f"{path}: not a kinema ONNX export (no '{META_KEY}' metadata; "
                              f"make one with kinema export-onnx)") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise KinemaError(f"{path}: kinema ONNX format {meta.get('format_version')} is not supported "
                              f"(this kinema reads {FORMAT_VERSION})")
        self.path, self.meta, self.config = path, meta, meta["config"]
        self.session = _session(path, threads)
        # A weightless copy of the generator draws latents exactly as PyTorch sampling does.
        try:
            with torch.device("meta"):
                skeleton = build(self.config["name"], **self.config["kwargs"]).G
        except (KinemaError, TypeError, KeyError) as err:
            raise KinemaError(f"{path}: bad model options in the metadata ({err})") from None
        self._skeleton = skeleton
        for attr in ("resolution", "frames", "channels", "num_classes", "can_extend", "streaming", "z_dim",
                     "anchor_every", "walk_angle"):
            if hasattr(skeleton, attr):
                setattr(self, attr, getattr(skeleton, attr))
        self.latent_names, self.state_shapes = list(meta["latents"]), dict(meta["state"])
        if self.state_shapes:
            self.advance = self._advance  # recurrent: kinema.sample.stream carries the state

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        return self._skeleton.make_latents(n, frames=frames, generator=generator, device="cpu")

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    def _feed(self, latents, state, labels) -> dict[str, np.ndarray]:
        feed = {k: latents[k].detach().to("cpu", torch.float32).numpy() for k in self.latent_names}
        feed.update({k: v.detach().to("cpu", torch.float32).numpy() for k, v in state.items()})
        if self.meta["labels"]:
            if labels is None:
                raise KinemaError(f"{self.path}: model has {self.num_classes} classes, pass labels")
            feed["labels"] = torch.as_tensor(labels).to("cpu", torch.long).numpy()
        return feed

    def _zero_state(self, batch: int) -> dict[str, torch.Tensor]:
        out = {}
        for k, shape in self.state_shapes.items():
            shape = list(shape)
            axis = self.meta["state_batch_axis"].get(k)
            if axis is not None:
                shape[axis] = batch
            out[k] = torch.zeros(shape)
        return out

    def _advance(self, latents, state=None, labels=None):
        """One call with the recurrent state carried: -> (video [n, C, T, H, W], next state)."""
        batch = int(latents[self.latent_names[0]].shape[0])
        state = self._zero_state(batch) if state is None else state
        outs = self.session.run(None, self._feed(latents, state, labels))
        return torch.from_numpy(outs[0]), {k: torch.from_numpy(v) for k, v in zip(self.state_shapes, outs[1:])}

    def __call__(self, latents, labels=None) -> torch.Tensor:
        if self.state_shapes:
            return self._advance(latents, None, labels)[0]
        return torch.from_numpy(self.session.run(None, self._feed(latents, {}, labels))[0])


def load_onnx(path, threads: int | None = None):
    """A kinema ONNX file as a :class:`kinema.Model` (``generate``, ``interpolate``, ``stream``, ...)
    whose network runs in onnxruntime on the CPU."""
    from kinema.sample.api import Model

    og = OnnxGenerator(path, threads)
    return Model(og, og.config, "cpu", str(path))


def compare(G: nn.Module, onnx_path, seeds=(0, 1), frames: int | None = None) -> float:
    """Max absolute difference between PyTorch's and onnxruntime's videos for ``seeds``."""
    from kinema.sample.generate import generate

    og = OnnxGenerator(onnx_path)
    a = generate(G.eval(), list(seeds), frames)
    b = generate(og, list(seeds), frames)
    return float((a - b).abs().max())
