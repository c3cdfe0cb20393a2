"""Streaming generation: frames made in chunks and encoded as they come, for any length.

Memory is bounded by one chunk (plus the encoder's lookahead) whatever the total length, because
no frame is kept after it is written. How consecutive chunks stay continuous depends on what
the generator is (``strategy`` in the returned statistics):

Each generator class declares which one it supports in its ``streaming`` attribute (a generator
that declares none makes fixed-length clips):

* ``"continuous"`` (ctgan): frames are a function of real-valued time; the canvas (content) is
  made once, motion anchors are drawn as the stream reaches them, and every chunk is rendered at
  its absolute times: the same frames as generating all at once, for any length.
* ``"recurrent"`` (mocogan; needs ``advance(latents, state, labels) -> (video, state)``):
  the content code is held for the whole stream and the motion GRU's hidden state is carried
  from one chunk to the next, so the stream is one unbroken unroll:
  identical to generating all frames at once (checked in the tests).
* ``"walk"`` (dcgan, any frame-per-latent model): each frame comes from its own latent, so the
  stream is one endless smooth latent walk (anchors drawn lazily with the model's own walk rule
  and step, slerp in between), cut into chunks.
* ``"clips"`` (videogan, videovae, anything that makes fixed-length clips): consecutive clips
  whose latents drift slowly along a slerp path through random keypoints (a new keypoint every
  ``drift`` clips), the last ``overlap`` frames of each clip cross-faded into the first frames of
  the next. Clips of nearby latents look alike, so the dissolve joins similar pictures.
* ``"continue"`` (flow): sliding-window continuation. Each new window's first ``overlap`` frames
  (whole latent frames of the model: multiples of its temporal compression) are the last ones of
  the window before, held on their straight noise-to-data path while the ODE runs (conditioning
  by replacement, no retraining), so the model fills in what comes next; only the new frames are
  written. Each window costs one full sample, so ``T - overlap`` new frames cost a T-frame clip.

Sinks: a file (any codec of :mod:`kinema.io`, written atomically on close), or a byte stream
(``"-"`` = stdout, or a binary file object) carrying MPEG-TS (pipe-able into ffplay/ffmpeg/VLC)
or raw rgb24 frames. Encoding can run on a background thread so the generator and the encoder
overlap (the generator then waits only when the encoder is the slower of the two). Every sink
has ``write(frames)``, ``close()`` and ``abort()`` (stop without a result).
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from typing import Callable, Iterator

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.sample.generate import (check_truncation, model_name, resolve_label, run_generator,
                                    truncate)
from kinema.models.latents import next_anchor, slerp


# ---------------------------------------------------------------------------------------------
# Frame sources: each yields float chunks [1, C, t, H, W] in [-1, 1], t <= chunk, forever.

def _recurrent_source(G, gen, label, chunk, device, psi) -> Iterator[torch.Tensor]:
    """Recurrent G (``advance(latents, state, labels) -> (video, state)``, e.g. MoCoGAN's motion
    GRU): the content code is held, fresh motion noise drawn per chunk, the state carried."""
    first = G.make_latents(1, frames=chunk, generator=gen, device=device)
    content = first["content"] * psi                          # [1, Zc], held for the whole stream
    noise = first["motion"] * psi                             # [1, chunk, Ze]
    state = None
    y = torch.tensor([label], device=device) if G.num_classes else None
    while True:
        with torch.no_grad():
            video, state = G.advance({"content": content, "motion": noise}, state, y)
            yield video                                       # [1, C, t, H, W]
        noise = G.make_latents(1, frames=chunk, generator=gen, device=device)["motion"] * psi


def _continuous_source(G, gen, label, chunk, device, psi) -> Iterator[torch.Tensor]:
    """Continuous-time G (ctgan): one canvas for the whole stream, motion anchors drawn as time
    reaches them (from the video's own anchor stream), frames rendered at absolute times. The same
    draws as ``generate`` for one seed, class included, so a stream's frames are the seed's video."""
    content, (anchor_stream,) = G.draw_video(1, gen)
    if G.num_classes and label is None:
        label = int(torch.randint(G.num_classes, (1,), generator=gen))
    y = torch.tensor([label], device=device) if G.num_classes else None
    every = int(G.anchor_every)
    anchors: list[torch.Tensor] = []                                      # each [1, Zm], anchors a0, a0 + 1, ...
    a0, t0 = 0, 0                                                         # first kept anchor, next frame
    with torch.no_grad():
        canvas, c = G.render_canvas(content.to(device) * psi, y)
    while True:
        last = (t0 + chunk - 1) // every + 1                              # right neighbour of the last frame
        while a0 + len(anchors) <= last:
            anchors.append(G.next_anchor(anchor_stream).to(device) * psi)
        times = torch.arange(t0, t0 + chunk, device=device).unsqueeze(0)  # [1, chunk]
        with torch.no_grad():
            yield G.render_frames(canvas, c, torch.stack(anchors, 1), times, anchor0=a0)
        t0 += chunk
        drop = t0 // every - a0                                           # anchors no frame needs any more
        del anchors[:drop]
        a0 += drop


def _keypoint_path(first, draw, every: int, mix) -> Iterator:
    """Endless points on a path through keypoints ``every`` steps apart: step ``i`` is
    ``mix(k_j, k_{j+1}, (i % every) / every)`` with ``j = i // every``; ``draw(k)`` makes the
    keypoint after ``k``, when the path reaches it. Only two keypoints are alive."""
    prev, nxt = first, draw(first)
    i = 0
    while True:
        r = i % every
        if r == 0 and i > 0:
            prev, nxt = nxt, draw(nxt)
        yield mix(prev, nxt, r / every)
        i += 1


def _walk_source(G, gen, label, chunk, device, psi) -> Iterator[torch.Tensor]:
    """DCGAN-style G (latents {"z": [n, T, Z]}, one frame per latent): an endless smooth walk.

    Anchors follow the model's rule a_k = cos(a) a_{k-1} + sin(a) e_k (each exactly N(0, I)),
    ``anchor_every`` frames apart; frames in between are slerped. Only two anchors are alive.
    """
    angle, dim = float(G.walk_angle), int(G.z_dim)
    path = _keypoint_path(torch.randn(1, dim, generator=gen),
                          lambda a: next_anchor(a, torch.randn(1, dim, generator=gen), angle), int(G.anchor_every),
                          slerp)
    while True:
        z = torch.stack([next(path) for _ in range(chunk)], 1).to(device)   # [1, chunk, Z]
        yield run_generator(G, truncate({"z": z}, psi), [label], device)


def _clip_source(G, gen, label, chunk, device, psi, overlap: int, drift: int) -> Iterator[torch.Tensor]:
    """Fixed-length-clip G: drifting latents, consecutive clips cross-faded over ``overlap`` frames."""
    T = int(G.frames)
    if not 0 <= overlap < T:
        raise KinemaError(f"overlap must be 0..{T - 1} frames for this {T}-frame model, got {overlap}")
    path = _keypoint_path(G.make_latents(1, generator=gen, device=device),
                          lambda _: G.make_latents(1, generator=gen, device=device), drift,
                          lambda a, b, t: {n: slerp(a[n], b[n], t) for n in a})
    batch = max(1, math.ceil(chunk / (T - overlap)))          # clips per G call
    tail = None                                               # [1, C, overlap, H, W] from the last clip
    while True:
        lats = [next(path) for _ in range(batch)]
        clips = run_generator(G, truncate({n: torch.cat([d[n] for d in lats]) for n in lats[0]}, psi),
                              [label] * batch, device)         # [batch, C, T, H, W]
        out = []
        for clip in clips.unsqueeze(1):                       # each [1, C, T, H, W]
            if tail is not None and overlap:
                w = torch.arange(1, overlap + 1, device=clip.device, dtype=clip.dtype) / (overlap + 1)
                w = w.view(1, 1, -1, 1, 1)
                out.append(tail * (1 - w) + clip[:, :, :overlap] * w)
            body_start = overlap if tail is not None else 0
            out.append(clip[:, :, body_start:T - overlap])
            tail = clip[:, :, T - overlap:] if overlap else None
        yield torch.cat(out, 2)


def _continue_source(G, gen, label, device, psi, overlap: int) -> Iterator[torch.Tensor]:
    """Flow G: windows that continue the last ``overlap`` frames of the previous one (see the module doc)."""
    t_lat = int(G.latent_shape[1])
    per = int(G.frames) // t_lat                              # pixel frames per latent frame
    if overlap % per or not 0 < overlap // per < t_lat:
        raise KinemaError(f"overlap must be a multiple of {per} frames between {per} and {int(G.frames) - per} "
                          f"for this model, got {overlap}")
    k = overlap // per
    z = y = None
    while True:
        noise = G.make_latents(1, generator=gen, device=device)["noise"] * psi   # [1, Zc, t, g, g]
        with torch.no_grad():
            if z is None:
                if G.num_classes:  # drawn after the first noise, as `generate` draws a seed's class
                    label = int(torch.randint(G.num_classes, (1,), generator=gen)) if label is None else label
                    y = torch.tensor([label], device=device)
                z = G.sample(noise, y, **G.sampler)
                yield G.decode(z)                             # the first window whole
                continue
            mask = torch.zeros_like(noise)
            mask[:, :, :k] = 1
            values = torch.zeros_like(noise)
            values[:, :, :k] = z[:, :, t_lat - k:]
            z = G.sample(noise, y, known=(values, mask), **G.sampler)
            yield G.decode(z)[:, :, overlap:]                 # only the new frames


STRATEGIES = ("continuous", "continue", "recurrent", "walk", "clips")


def pick_strategy(G) -> str:
    """How chunks of this generator join (see the module doc), as its class declares it."""
    strategy = getattr(G, "streaming", "clips")
    if strategy not in STRATEGIES:
        raise KinemaError(f"{model_name(G)}: unknown streaming strategy {strategy!r} ({', '.join(STRATEGIES)})")
    return strategy


def frame_chunks(G, frames: int, seed: int = 0, chunk: int = 16, class_=None, truncation: float = 1.0,
                 device="cpu", overlap: int | None = None, drift: int = 4, config: dict | None = None,
                 strategy: str | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 chunks ``[t, H, W, C]`` adding up to exactly ``frames`` frames."""
    from kinema.io import to_uint8

    name = model_name(G, config)
    if int(frames) != frames or frames < 1:
        raise KinemaError(f"frames must be a whole number >= 1, got {frames}")
    if int(chunk) != chunk or chunk < 1:
        raise KinemaError(f"chunk must be a whole number >= 1, got {chunk}")
    if int(drift) != drift or drift < 1:
        raise KinemaError(f"drift must be a whole number >= 1, got {drift}")
    psi = check_truncation(truncation)
    label = resolve_label(G, class_, ((config or {}).get("meta") or {}).get("class_names"), name)
    gen = torch.Generator().manual_seed(int(seed))
    G.eval()
    strategy = strategy or pick_strategy(G)
    # A seed's class: drawn first, except for continuous and continued streams, which draw it after
    # the first latents exactly as `generate` does (so their frames are the seed's video).
    if G.num_classes and label is None and strategy not in ("continuous", "continue"):
        label = int(torch.randint(G.num_classes, (1,), generator=gen))
    if strategy == "continuous":
        source = _continuous_source(G, gen, label, int(chunk), device, psi)
    elif strategy == "recurrent":
        source = _recurrent_source(G, gen, label, int(chunk), device, psi)
    elif strategy == "walk":
        source = _walk_source(G, gen, label, int(chunk), device, psi)
    elif strategy == "continue":
        source = _continue_source(G, gen, label, device, psi, int(G.frames) // 2 if overlap is None else int(overlap))
    elif strategy == "clips":
        ov = max(1, int(G.frames) // 4) if overlap is None else int(overlap)
        source = _clip_source(G, gen, label, int(chunk), device, psi, ov, int(drift))
    else:
        raise KinemaError(f"unknown streaming strategy {strategy!r}")
    left = int(frames)
    for video in source:
        part = to_uint8(video[0, :, :left])                   # [t, H, W, C]
        left -= len(part)
        yield part
        if left <= 0:
            return


# ---------------------------------------------------------------------------------------------
# Sinks.

class RawSink:
    """Raw rgb24 (or gray8) frames, back to back, into a binary file object (no header:
    the reader must know W, H and the pixel format; they are printed to stderr by the CLI)."""

    def __init__(self, fileobj):
        self.f = fileobj

    def write(self, frames: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(frames).tobytes())

    def close(self) -> None:
        self.f.flush()

    def abort(self) -> None:
        """Stop: frames already sent down the pipe cannot be taken back, so only flush them."""
        self.f.flush()


class ThreadedSink:
    """Runs another sink's ``write`` on a background thread behind a queue of ``depth`` chunks,
    so generation continues while the encoder works (encoders release the GIL)."""

    def __init__(self, sink, depth: int = 2):
        self.sink, self.q, self.error = sink, queue.Queue(maxsize=depth), None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while (item := self.q.get()) is not None:
            if self.error is None:
                try:
                    self.sink.write(item)
                except BaseException as err:  # re-raised on the caller's thread
                    self.error = err

    def write(self, frames: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(frames)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.sink.close()

    def abort(self) -> None:
        """Stop the encoder thread (queued chunks are still written), then abort the inner sink."""
        self.q.put(None)
        self.thread.join()
        self.sink.abort()


def open_sink(out, fps: float, codec: str = "h264", fmt: str | None = None, crf: int | None = None,
              force: bool = False, **writer_kwargs):
    """A sink for ``out``: a path (encoded file, atomic), ``"-"`` (stdout) or a binary file object.

    ``fmt``: for byte streams ``"mpegts"`` or ``"raw"`` (headerless frames); default: the codec's
    stream container (MPEG-TS for h264/hevc, Matroska otherwise). Files take the container from
    their extension.
    """
    from kinema.io import VideoWriter

    is_stream = out == "-" or hasattr(out, "write")
    fileobj = (sys.stdout.buffer if out == "-" else out) if is_stream else None
    if fmt not in (None, "mpegts", "raw"):
        raise KinemaError(f"stream format must be mpegts or raw, got {fmt!r}")
    if fmt == "raw":
        if is_stream:
            return RawSink(fileobj)
        raise KinemaError(f"{out}: raw frames go to stdout or a pipe (use '-'), not a file")
    if is_stream:
        return VideoWriter(fileobj, fps, codec, crf=crf, format=fmt, **writer_kwargs)
    return VideoWriter(out, fps, codec, crf=crf, overwrite=force, **writer_kwargs)


def stream(G, out, frames: int, seed: int = 0, fps: float = 16.0, chunk: int = 16, codec: str = "h264",
           fmt: str | None = None, crf: int | None = None, class_=None, truncation: float = 1.0,
           device="cpu", threaded: bool = True, realtime: bool = False, overlap: int | None = None,
           drift: int = 4, force: bool = False, config: dict | None = None,
           progress: Callable[[dict], None] | None = None, **writer_kwargs) -> dict:
    """Generate ``frames`` frames of seed ``seed`` into ``out`` chunk by chunk; returns statistics:
    ``frames``, ``seconds``, ``generated_fps``, ``target_fps``, ``realtime_factor`` (generated /
    target), ``strategy``. ``realtime`` paces output to ``fps`` (for live viewing)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise KinemaError(f"fps must be positive, got {fps}")
    if not (out == "-" or hasattr(out, "write")):
        from kinema.fsutil import refuse_existing
        refuse_existing(out, force)  # before any generation work
    t0 = time.perf_counter()
    source = frame_chunks(G, frames, seed, chunk, class_, truncation, device, overlap, drift, config)
    first = next(source)  # validate everything before creating the output
    sink = open_sink(out, fps, codec, fmt, crf, force, **writer_kwargs)
    if threaded:
        sink = ThreadedSink(sink)
    done, ok = 0, False
    try:
        for part in _chain(first, source):
            sink.write(part)
            done += len(part)
            if realtime:
                # Never run ahead of the wall clock: frame i is due at t0 + i / fps.
                time.sleep(max(0.0, t0 + done / fps - time.perf_counter()))
            if progress is not None:
                progress({"frames": done, "seconds": time.perf_counter() - t0})
        ok = True
    finally:
        if ok:
            sink.close()
        else:
            sink.abort()    # drop a half-written output: a file's temporary is never renamed
    seconds = time.perf_counter() - t0
    gen_fps = done / seconds if seconds > 0 else float("inf")
    return {"frames": done, "seconds": seconds, "generated_fps": gen_fps, "target_fps": float(fps),
            "realtime_factor": gen_fps / fps, "strategy": pick_strategy(G)}


def _chain(first, rest):
    yield first
    yield from rest

