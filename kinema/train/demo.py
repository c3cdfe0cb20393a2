"""``kinema demo``: from nothing to a generated video in a fixed wall-clock budget.

Prepares the built-in moving-digits dataset, trains the demo preset until the budget (which
includes the preparation and the preview) runs out, then samples the exported EMA generator
for fixed seeds and writes ``OUT/preview.mp4`` (4x4 grid, enlarged), ``OUT/preview.png``
(one row per video, one column per frame) and ``OUT/preview.json`` (the seeds and the truncation
the preview used, so `kinema generate` and bench/bench_demo.py can reproduce it).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError
from kinema.fsutil import atomic_write_text
from kinema.train.config import get_preset, override

# Seconds kept back from the training budget for the final export and the preview.
RESERVE_S = 8.0
# Latent temperature of the preview (`kinema generate --truncation`): after a few minutes of
# training the typical latents (near the prior's centre) give clean digits and the tails give
# half-formed ones; scaling the latents trades variety within a class (the class itself is
# drawn as usual) for cleaner strokes. At 1.0 because truncation lowered the demo's scores
# (docs/results.md, "Demo quality").
PREVIEW_TRUNCATION = 1.0
# Frames per preview video: the demo preset's log.preview_frames (16). The demo trains on short
# clips (in a fixed budget optimizer steps are what counts, and neighbouring frames teach little
# more); a generator that can extend its clips (dcgan's latent walk) shows a 2-second video
# instead, and bench/bench_demo.py scores exactly this length, so the number and the preview
# agree. The export records it (meta.preview_frames), so `kinema generate runs/demo` makes clips
# of the same length.
# Files a previous demo (or any kinema run) leaves in its folder: safe to replace.
RUN_FILES = ("config.json", "log.jsonl", "preview.mp4", "preview.png", "preview.json")
RUN_GLOBS = ("training-state-*.pt", "export-*.safetensors", "export-*.json", ".tmp-*")
RUN_DIRS = ("tb", "samples")


@dataclasses.dataclass
class DemoResult:
    out: Path
    preview_mp4: Path
    preview_png: Path
    export: Path
    kimg: float
    seconds: float
    train_seconds: float


def clear_run_folder(out: Path, force: bool = False) -> None:
    """Empty a folder of an earlier run's files; refuse a folder holding anything else, and one
    holding a training run (states or exports) unless ``force``."""
    if not out.exists():
        return
    if not out.is_dir():
        raise KinemaError(f"{out}: exists and is not a folder")
    known = {out / n for n in RUN_FILES} | {out / n for n in RUN_DIRS}
    for pattern in RUN_GLOBS:
        known |= set(out.glob(pattern))
    strangers = [p for p in out.iterdir() if p not in known]
    if strangers:
        raise KinemaError(f"{out}: holds files that are not from a kinema run ({strangers[0].name}); "
                          "choose another --out")
    states, exports = list(out.glob("training-state-*.pt")), list(out.glob("export-*.safetensors"))
    if (states or exports) and not force:
        raise KinemaError(f"{out}: holds a training run ({len(states)} training states, {len(exports)} exports); "
                          "pass --force to replace it, or choose another --out")
    for p in known:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def run_demo(minutes: float = 3.0, out="runs/demo", seed: int = 0, cache_dir=None, model: str | None = None,
             progress: bool = True, overrides: dict | None = None, log=print, force: bool = False) -> DemoResult:
    """Prepare moving digits, train the demo preset for ``minutes`` in all, write the preview.

    An earlier run in ``out`` (training states, exports) is replaced only with ``force``.

    ``overrides``: ``{"section": {"field": value}}`` applied to the demo preset (for tuning).
    """
    from kinema.data import resolve_source
    from kinema.io import to_uint8, write_grid_png, write_grid_video
    from kinema.models import load_generator
    from kinema.sample.generate import default_frames, generate
    from kinema.train.loop import train

    t0 = time.monotonic()
    out = Path(out)
    cfg = get_preset("demo")
    if model and model != cfg.model.name:   # another model keeps only the preset options it has
        from kinema.models import accepted_options
        model_cfg = {"name": model, "extra": accepted_options(model, cfg.model.extra)}
    else:
        model_cfg = {}
    cfg = override(cfg, data={"cache_dir": str(cache_dir) if cache_dir else None},
                   model=model_cfg, schedule={"seed": seed},
                   log={"out": str(out), "progress": progress})
    cfg = override(cfg, **(overrides or {}))
    clear_run_folder(out, force)

    # Prepare the data (counts towards the budget; reused from the cache on a second run).
    log(f"kinema demo: preparing {cfg.data.source} at {cfg.data.resolution}x{cfg.data.resolution}, "
        f"{cfg.data.frames} frames per clip")
    archive = resolve_source(cfg.data.source, cfg.data.resolution, cfg.data.frames, cache_dir=cfg.data.cache_dir)
    left = minutes * 60 - (time.monotonic() - t0) - RESERVE_S
    if left < 5:
        raise KinemaError(f"--minutes {minutes}: too short to train anything (preparing took "
                          f"{time.monotonic() - t0:.0f} s); give at least 0.5")

    # Train for what is left of the budget.
    log(f"kinema demo: {archive.num_clips} clips ready; training {cfg.model.name} for {left:.0f} s")
    result = train(override(cfg, schedule={"minutes": left / 60}), log=log)
    if result.export is None:
        raise KinemaError(f"{out}: training ended without an export")

    # Sample the export exactly as `kinema generate` would: one seed per video.
    G, config = load_generator(result.export)
    seeds = list(range(16))
    frames = default_frames(G, config)
    videos = to_uint8(generate(G, seeds, frames=frames, config=config, truncation=PREVIEW_TRUNCATION))  # [16, T, 32, 32, C]
    fps = float(config.get("meta", {}).get("fps") or 8)
    # 32-pixel clips are hard to see: enlarge 4x (nearest) for the mp4.
    big = np.repeat(np.repeat(videos, 4, axis=2), 4, axis=3)
    mp4 = write_grid_video(out / "preview.mp4", big, fps=fps, cols=4, overwrite=True)
    png = write_grid_png(out / "preview.png", videos, overwrite=True)
    atomic_write_text(out / "preview.json", json.dumps({"export": result.export.name, "seeds": seeds,
                                                        "frames": frames, "truncation": PREVIEW_TRUNCATION}, indent=2) + "\n")
    seconds = time.monotonic() - t0
    log(f"kinema demo: {result.nimg / 1000:.1f} kimg in {result.seconds:.0f} s of training, {seconds:.0f} s in all")
    log(f"  preview video: {mp4}\n  preview grid:  {png}\n  model export:  {result.export}")
    log(f"  more: kinema generate {out} --seeds 0-63 --truncation {PREVIEW_TRUNCATION:g} --out {out}-videos")
    return DemoResult(out=out, preview_mp4=Path(mp4), preview_png=Path(png), export=result.export,
                      kimg=result.nimg / 1000, seconds=seconds, train_seconds=result.seconds)
