"""``kinema studio``: a FastAPI app over kinema's own functions, and one hand-written page.

    from kinema.studio.app import Studio, create_app
    studio = Studio("runs", data_roots=["data"])
    app = create_app(studio)            # serve with uvicorn; studio.close() stops its workers

Every request that computes (generate, interpolate, compare, edit) is checked at once - a bad
request gets its one-line error back before anything is queued - and then runs as a job on the
studio's single worker (``kinema.studio.jobs``). Training runs as a ``kinema train`` subprocess
(``kinema.studio.trainer``). Paths in requests are relative to RUNS_DIR or a data root and are
confined to them (``kinema.studio.paths``). Errors are JSON ``{"error": "..."}`` with status 400
(bad input), 403 (a path outside the roots), 404, 409 (a training run is in progress), 413 (upload
too large) or 429 (queue full).
"""


import collections
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kinema import __version__
from kinema.errors import KinemaError
from kinema.studio.jobs import Job, JobNotFound, JobQueue, QueueFull
from kinema.studio.paths import PathRefused, confine, confine_any, relative_to_root
from kinema.studio import runs as runs_mod
from kinema.studio.trainer import Busy, Trainer

PAGE = Path(__file__).with_name("page.html")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
JOB_FILES = re.compile(r"^[a-z0-9_-]{1,40}\.(mp4|gif|png)$")
EDIT_OPS = ("trim", "speed", "reverse", "fade", "upscale")


class _TooLarge(KinemaError):
    """An upload over the size cap (HTTP 413)."""


class NotFound(KinemaError):
    """A run, export, file or job file that is not there (HTTP 404)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``kinema studio --help`` lists the flags that change them)."""
    max_seeds: int = 64              # videos per generate request
    max_frames: int = 256            # frames per video
    max_batch: int = 16              # videos per generator call
    max_resolution: int = 256        # exports above this frame side are refused
    max_pixels: int = 16 * 2 ** 20   # seeds x frames x H x W per request (16 Mi pixels: 48 MiB of RGB)
    max_steps: int = 16              # interpolation clips between two seeds
    max_compare_seeds: int = 16
    max_queue: int = 32              # jobs waiting
    keep_jobs: int = 64              # finished jobs whose files are kept
    max_upload_mb: float = 64.0
    max_edit_frames: int = 2048
    max_edit_side: int = 1024        # frame side of an edit's input and output


class _ModelCache:
    """The last few loaded exports (only the worker thread uses it), keyed by path and mtime."""

    def __init__(self, size: int = 2):
        self.size, self.items = size, collections.OrderedDict()

    def get(self, path: Path, device: str):
        from kinema.sample import load

        key = (str(path), path.stat().st_mtime_ns, device)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        model = load(path, device=device)
        self.items[key] = model
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return model


def _num(params: dict, key: str, kind=float, default=None, lo=None, hi=None, what=None):
    """A number from a request, with a one-line error naming the field."""
    what = what or key
    value = params.get(key, default)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        out = kind(value)
        if kind is int and float(value) != out:
            raise ValueError
    except (TypeError, ValueError):
        raise KinemaError(f"{what}: expected {'a whole number' if kind is int else 'a number'}, got {value!r}") from None
    if not np.isfinite(out) or (lo is not None and out < lo) or (hi is not None and out > hi):
        raise KinemaError(f"{what}: {out} is outside {lo}..{hi}")
    return out


class Studio:
    """The state behind the app: roots, limits, the job queue, the trainer, loaded models."""

    def __init__(self, runs_dir, data_roots=(), limits: Limits = Limits(), device: str = "cpu",
                 train_threads: int | None = None, log=print):
        self.runs_dir = Path(os.path.realpath(runs_dir))
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.data_roots = [Path(os.path.realpath(r)) for r in data_roots]
        for r in self.data_roots:
            if not r.is_dir():
                raise KinemaError(f"{r}: data root is not a folder")
        self.limits, self.device, self.train_threads, self.log = limits, device, train_threads, log
        self.work = self.runs_dir / ".studio"
        self.uploads = self.work / "uploads"
        self.queue = JobQueue(self.work / "jobs", limits.max_queue, limits.keep_jobs, log=log)
        self.trainer = Trainer()
        self.models = _ModelCache()
        self.queue.start()
        self.uploads.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.trainer.close()
        self.queue.close()

    # -- paths ---------------------------------------------------------------------------------

    def run_path(self, rel: str, what: str = "path") -> Path:
        return confine(self.runs_dir, rel, what)

    def export_path(self, rel: str, what: str = "export") -> Path:
        """An export under RUNS_DIR: its .safetensors/.json or a run folder (its newest export).
        Both files must lie inside RUNS_DIR once symlinks are resolved."""
        from kinema.models.export import find_export

        p = self.run_path(rel, what)
        if not p.exists():
            raise NotFound(f"{what} {rel!r}: not found under the runs folder")
        weights = find_export(p)
        for f in (weights, weights.with_suffix(".json")):
            if self.runs_dir not in Path(os.path.realpath(f)).parents:
                raise PathRefused(f"{what} {rel!r}: refused ({f.name} leads outside the runs folder)")
        return weights

    def check_export(self, rel: str, what: str = "export") -> tuple[Path, dict]:
        """The export's path and sidecar, checked against the limits without loading the weights."""
        from kinema.models.export import read_config

        path = self.export_path(rel, what)
        config = read_config(path)
        res = int((config.get("kwargs") or {}).get("resolution") or 0)
        if res > self.limits.max_resolution:
            raise KinemaError(f"{what} {rel!r}: {res}x{res} frames exceed this studio's limit of "
                              f"{self.limits.max_resolution} px (kinema studio --max-resolution)")
        return path, config

    def data_spec(self, text: str) -> str:
        """``builtin:NAME`` or an archive folder under a data root -> what ``kinema train`` gets."""
        from kinema.data.builtin import BUILTINS

        text = str(text or "").strip()
        if text.startswith("builtin:"):
            if text[len("builtin:"):] not in BUILTINS:
                raise KinemaError(f"{text}: unknown built-in dataset; known: builtin:{', builtin:'.join(BUILTINS)}")
            return text
        if not self.data_roots:
            raise KinemaError(f"data {text!r}: this studio has no data root (start it with --data-root DIR "
                              "to train on prepared archives); built-in datasets work without one")
        folder = confine_any(self.data_roots, text, "data")
        if not (folder / "index.json").is_file():
            raise KinemaError(f"{text}: not a kinema archive (no index.json); run `kinema prepare` on it first")
        return str(folder)

    def archives(self) -> list[str]:
        out = []
        for root in self.data_roots:
            for index in sorted(root.glob("*/index.json")) + sorted(root.glob("*/*/index.json")):
                rel = index.parent.relative_to(root).as_posix()
                if not any(part.startswith(".") for part in rel.split("/")):
                    out.append(rel)
        return out

    # -- jobs ----------------------------------------------------------------------------------

    def _frames_budget(self, n: int, frames: int, res: int) -> None:
        pixels = n * frames * res * res
        if pixels > self.limits.max_pixels:
            raise KinemaError(f"request too large: {n} videos x {frames} frames x {res}x{res} = {pixels} pixels "
                              f"(limit {self.limits.max_pixels}); ask for fewer seeds or frames")

    def _gen_params(self, params: dict, config: dict, max_seeds: int) -> dict:
        from kinema.sample.seeds import parse_seeds

        L = self.limits
        seeds = parse_seeds(str(params.get("seeds", "0")).strip() or "0")
        if len(seeds) > max_seeds:
            raise KinemaError(f"seeds: {len(seeds)} videos asked, this studio allows {max_seeds} per request")
        kw = config.get("kwargs") or {}
        frames = _num(params, "frames", int, None, 1, L.max_frames)
        res = int(kw.get("resolution") or 0)
        self._frames_budget(len(seeds), frames or int(kw.get("frames") or 16), res)
        cls = params.get("class")
        cls = None if cls in (None, "") else str(cls)
        return dict(seeds=seeds, frames=frames, class_=cls,
                    truncation=_num(params, "truncation", float, 1.0, 0.0, 2.0),
                    batch=_num(params, "batch", int, 8, 1, L.max_batch),
                    fps=_num(params, "fps", float, None, 0.1, 240.0))

    def submit_generate(self, params: dict) -> Job:
        from kinema.sample.seeds import format_seeds

        path, config = self.check_export(params.get("export", ""))
        p = self._gen_params(params, config, self.limits.max_seeds)
        label = format_seeds(p["seeds"]) if p["seeds"] == sorted(p["seeds"]) else ",".join(map(str, p["seeds"]))
        return self.queue.submit("generate", f"{relative_to_root(self.runs_dir, path)} seeds {label}",
                                 lambda job: self._generate(job, path, p))

    def _generate(self, job: Job, path: Path, p: dict) -> dict:
        from kinema.io import write_grid_png, write_grid_video, write_video

        model = self.models.get(path, self.device)
        videos = model.generate(p["seeds"], frames=p["frames"], class_=p["class_"], truncation=p["truncation"],
                                batch=p["batch"])          # uint8 [N, T, H, W, C]
        fps = p["fps"] or model.fps
        if len(videos) == 1:     # the same encoder and settings as `kinema generate --seeds S`
            write_video(job.folder / "video.mp4", videos[0], fps, codec="h264")
            write_video(job.folder / "video.gif", videos[0], fps, codec="gif")
        else:
            write_grid_video(job.folder / "video.mp4", videos, fps, codec="h264")
            write_grid_video(job.folder / "video.gif", videos, fps, codec="gif")
        write_grid_png(job.folder / "grid.png", videos)
        return {"files": ["video.mp4", "video.gif", "grid.png"], "video": "video.mp4", "fps": fps,
                "shape": list(videos.shape), "seeds": p["seeds"], "export": relative_to_root(self.runs_dir, path)}

    def submit_interpolate(self, params: dict) -> Job:
        path, config = self.check_export(params.get("export", ""))
        a = _num(params, "seed_a", int, 0, 0, 2 ** 63 - 1, "seed A")
        b = _num(params, "seed_b", int, 1, 0, 2 ** 63 - 1, "seed B")
        steps = _num(params, "steps", int, 8, 1, self.limits.max_steps)
        p = self._gen_params({**params, "seeds": f"{a},{b}"}, config, 2)
        self._frames_budget(steps + 1, p["frames"] or int((config.get("kwargs") or {}).get("frames") or 16),
                            int((config.get("kwargs") or {}).get("resolution") or 0))
        return self.queue.submit("interpolate", f"{relative_to_root(self.runs_dir, path)} seeds {a}->{b}",
                                 lambda job: self._interpolate(job, path, a, b, steps, p))

    def _interpolate(self, job: Job, path: Path, a: int, b: int, steps: int, p: dict) -> dict:
        from kinema.io import write_grid_png, write_video

        model = self.models.get(path, self.device)
        clips = model.interpolate([a, b], steps=steps, frames=p["frames"], class_=p["class_"],
                                  truncation=p["truncation"], batch=p["batch"])   # [steps + 1, T, H, W, C]
        fps = p["fps"] or model.fps
        names = []
        for i, clip in enumerate(clips):
            names.append(f"clip{i:02d}.mp4")
            write_video(job.folder / names[-1], clip, fps, codec="h264")
        write_grid_png(job.folder / "grid.png", clips)
        return {"files": names + ["grid.png"], "clips": names, "video": names[0], "fps": fps,
                "shape": list(clips.shape), "seeds": [a, b], "export": relative_to_root(self.runs_dir, path)}

    def submit_compare(self, params: dict) -> Job:
        pa, ca = self.check_export(params.get("a", ""), "A")
        pb, cb = self.check_export(params.get("b", ""), "B")
        p = self._gen_params(params, ca, self.limits.max_compare_seeds)
        self._gen_params(params, cb, self.limits.max_compare_seeds)
        metric = str(params.get("metric") or "").strip() or None
        num = _num(params, "num", int, 32, 2, 512, "num")
        if metric:
            from kinema.metrics.protocols import get_protocol
            get_protocol(metric)
        return self.queue.submit("compare", f"{relative_to_root(self.runs_dir, pa)} vs "
                                 f"{relative_to_root(self.runs_dir, pb)}",
                                 lambda job: self._compare(job, (pa, pb), p, metric, num))

    def _compare(self, job: Job, paths, p: dict, metric: str | None, num: int) -> dict:
        from kinema.io import write_grid_video
        from kinema.studio.measures import motion_measures, protocol_result

        columns, rows = [], collections.OrderedDict()
        for side, path in zip("ab", paths):
            model = self.models.get(path, self.device)
            videos = model.generate(p["seeds"], frames=p["frames"], class_=p["class_"], truncation=p["truncation"],
                                    batch=p["batch"])
            write_grid_video(job.folder / f"{side}.mp4", videos, p["fps"] or model.fps, codec="h264")
            rel = relative_to_root(self.runs_dir, path)
            columns.append(rel)
            meta = model.config.get("meta") or {}
            values = {"model": model.name, "kimg": meta.get("kimg"), "data": meta.get("source"),
                      "clip": f"{model.resolution}x{model.resolution}x{model.frames}, {model.channels} ch"}
            values.update(motion_measures(videos, model.config, self.data_roots, self.device))
            folder = path.parent
            for r in runs_mod.eval_results(folder):
                values[f"eval {r['metric']} @{r['kimg']} kimg"] = r["value"]
            if metric:
                values.update(protocol_result(metric, path, model.config, self.data_roots, num, self.device))
            for k, v in values.items():
                rows.setdefault(k, {})[side] = v
        table = [{"measure": k, "a": v.get("a"), "b": v.get("b")} for k, v in rows.items()]
        return {"files": ["a.mp4", "b.mp4"], "columns": columns, "table": table, "seeds": p["seeds"]}

    def upload_target(self, filename: str, length: int | None) -> tuple[Path, int]:
        """Where an upload goes (``.studio/uploads``), and the byte cap it must stay under."""
        cap = int(self.limits.max_upload_mb * 2 ** 20)
        if length is not None and length > cap:
            raise _TooLarge(f"upload: {length} bytes exceed the limit of {self.limits.max_upload_mb:g} MiB")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "upload").name).lstrip("._-")[:60] or "upload"
        return self.uploads / f"{time.time_ns() // 1000:x}-{stem}", cap

    def check_upload(self, target: Path, size: int) -> dict:
        """Probe an upload as the CLI would (the same one-line errors); a bad file is removed."""
        from kinema.io import probe

        try:
            info = probe(target, max_side=self.limits.max_edit_side)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return {"upload": relative_to_root(self.runs_dir, target), "name": target.name, "width": info.width,
                "height": info.height, "fps": info.fps, "frames": info.num_frames, "bytes": size}

    def submit_edit(self, params: dict) -> Job:
        op = str(params.get("op") or "")
        if op not in EDIT_OPS:
            raise KinemaError(f"edit: unknown operation {op!r}; choose {', '.join(EDIT_OPS)}")
        source = self._edit_source(params)
        args = {"op": op}
        if op == "trim":
            args.update(start=_num(params, "start", float, 0.0, 0.0, None), end=_num(params, "end", float, None, 0.0, None))
        elif op == "speed":
            args["factor"] = _num(params, "factor", float, 2.0, 0.05, 20.0, "speed factor")
        elif op == "fade":
            args.update(fade_in=_num(params, "fade_in", float, 0.0, 0.0, 60.0, "fade in"),
                        fade_out=_num(params, "fade_out", float, 0.0, 0.0, 60.0, "fade out"))
        elif op == "upscale":
            args["scale"] = _num(params, "scale", int, 2, 2, 8, "upscale factor")
            model = str(params.get("model") or "").strip()
            args["model"] = self.run_path(model, "upscaler") if model else None
            if args["model"] is not None and not args["model"].is_file():
                raise KinemaError(f"upscaler {model!r}: not found under the runs folder")
        return self.queue.submit("edit", f"{op} {source.name}", lambda job: self._edit(job, source, args))

    def _edit_source(self, params: dict) -> Path:
        if params.get("job"):
            job = self.queue.get(str(params["job"]))
            if job.state != "done" or not job.result or not job.result.get("video"):
                raise KinemaError(f"job {job.id}: has no finished video to edit")
            return job.folder / job.result["video"]
        rel = str(params.get("upload") or "")
        if not rel:
            raise KinemaError("edit: choose a generated clip or upload one")
        path = self.run_path(rel, "upload")
        if self.uploads not in path.parents or not path.is_file():
            raise PathRefused(f"upload {rel!r}: not an uploaded file of this studio")
        return path

    def _edit(self, job: Job, source: Path, a: dict) -> dict:
        from kinema.edit import ops, spatial
        from kinema.io import probe, read_video, write_video

        L = self.limits
        info = probe(source, max_side=L.max_edit_side)
        if info.num_frames > L.max_edit_frames:
            raise KinemaError(f"{source.name}: {info.num_frames} frames exceed the edit limit of {L.max_edit_frames}")
        video = read_video(source, max_side=L.max_edit_side)
        frames, fps = video.frames, video.fps
        op = a["op"]
        if op == "trim":
            frames = ops.trim(frames, fps, a["start"], a["end"])
        elif op == "speed":
            frames = ops.speed(frames, a["factor"])
        elif op == "reverse":
            frames = ops.reverse(frames)
        elif op == "fade":
            frames = ops.fade(frames, ops.seconds_to_frames(a["fade_in"], fps, "fade in"),
                              ops.seconds_to_frames(a["fade_out"], fps, "fade out"))
        elif op == "upscale":
            h, w = frames.shape[1:3]
            if max(h, w) * a["scale"] > L.max_edit_side:
                raise KinemaError(f"upscale: {w}x{h} x{a['scale']} exceeds the limit of {L.max_edit_side} px per side")
            if a["model"] is not None:
                from kinema.edit.upscale import load_upscaler, upscale
                model, _ = load_upscaler(a["model"], device=self.device)
                frames = upscale(frames, model, device=self.device)
            else:
                frames = spatial.resize(frames, scale=a["scale"], filter="lanczos")
        if len(frames) > L.max_edit_frames:
            raise KinemaError(f"edit: the result has {len(frames)} frames, over the limit of {L.max_edit_frames}")
        write_video(job.folder / "video.mp4", frames, fps, codec="h264")
        write_video(job.folder / "video.gif", frames, fps, codec="gif")
        return {"files": ["video.mp4", "video.gif"], "video": "video.mp4", "fps": fps,
                "shape": list(frames.shape), "source": source.name}

    # -- training ------------------------------------------------------------------------------

    def start_training(self, params: dict) -> dict:
        from kinema.models import MODELS
        from kinema.train.config import PRESETS
        from kinema.train.checkpoint import list_states

        name = str(params.get("name") or "").strip()
        if not RUN_NAME.match(name):
            raise KinemaError(f"run name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (not starting with '.' or '-')")
        out = self.run_path(name, "run name")
        if out.exists() and (list_states(out) or any(out.glob("export-*"))):
            raise KinemaError(f"{name}: already holds a run; choose another name")
        preset = str(params.get("preset") or "default")
        if preset not in PRESETS:
            raise KinemaError(f"preset: unknown preset {preset!r} ({', '.join(PRESETS)})")
        args = [self.data_spec(params.get("data") or "builtin:moving_digits"), "--preset", preset]
        model = str(params.get("model") or "").strip()
        if model:
            if model not in MODELS:
                raise KinemaError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
            args += ["--model", model]
        minutes = _num(params, "minutes", float, None, 0.0, 7 * 24 * 60)
        kimg = _num(params, "kimg", float, None, 0.0, 1e6)
        if minutes is not None:
            args += ["--minutes", repr(minutes)]
        if kimg is not None:
            args += ["--kimg", repr(kimg)]
        for key, flag in (("batch", "--batch"), ("seed", "--seed")):
            v = _num(params, key, int, None, 0, 1 << 20)
            if v is not None:
                args += [flag, str(v)]
        if self.device != "cpu":
            args += ["--device", self.device]
        if self.train_threads:
            args += ["--threads", str(self.train_threads)]
        self.trainer.start(name, out, args)
        return self.training()

    def training(self) -> dict:
        info = self.trainer.describe()
        if self.trainer.out is not None:
            folder = self.trainer.out
            config = runs_mod._json(folder / "config.json") or {}
            schedule = config.get("schedule") or {}
            last = [runs_mod.last_record(folder)]
            info.update(state=runs_mod.state_of(folder), kimg=last[0].get("kimg"), total_kimg=schedule.get("kimg"),
                        minutes=schedule.get("minutes"), last=last[0])
        return info


def _status_of(err: Exception) -> int:
    if isinstance(err, PathRefused):
        return 403
    if isinstance(err, _TooLarge):
        return 413
    if isinstance(err, (NotFound, JobNotFound)):
        return 404
    if isinstance(err, QueueFull):
        return 429
    if isinstance(err, Busy):
        return 409
    return 400


def create_app(studio: Studio):
    """The FastAPI app serving the page and the JSON API of ``studio``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    app = FastAPI(title="kinema studio", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio

    @app.exception_handler(KinemaError)
    async def _kinema_error(request, err: KinemaError):
        return JSONResponse({"error": str(err)}, status_code=_status_of(err))

    async def body(request: Request) -> dict:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise KinemaError("request body: not valid JSON") from None
        if not isinstance(data, dict):
            raise KinemaError("request body: expected a JSON object")
        return data

    def job_reply(job: Job) -> JSONResponse:
        return JSONResponse(studio.queue.describe(job), status_code=202)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    def info():
        from kinema.data.builtin import BUILTINS
        from kinema.models import MODELS
        from kinema.metrics.protocols import PROTOCOLS
        from kinema.train.config import PRESETS

        return {"version": __version__, "runs_dir": str(studio.runs_dir), "limits": asdict(studio.limits),
                "models": list(MODELS), "presets": list(PRESETS), "builtins": [f"builtin:{b}" for b in BUILTINS],
                "archives": studio.archives(), "data_roots": [str(r) for r in studio.data_roots],
                "exports": runs_mod.list_export_files(studio.runs_dir), "protocols": list(PROTOCOLS),
                "runs_with_exports": [relative_to_root(studio.runs_dir, f) for f in runs_mod.find_runs(studio.runs_dir)
                                      if runs_mod.list_exports(f)],
                "edit_ops": list(EDIT_OPS), "device": studio.device}

    @app.get("/api/runs")
    def runs():
        studio.trainer.running()     # reaps a finished training process, so its pid reads as gone
        items = [runs_mod.summary(studio.runs_dir, f) for f in runs_mod.find_runs(studio.runs_dir)]
        return {"runs": sorted(items, key=lambda r: -r["mtime"])}

    def run_folder(name: str) -> Path:
        folder = studio.run_path(name, "run")
        if not runs_mod.is_run(folder):
            raise NotFound(f"run {name!r}: not a run folder under the runs folder")
        return folder

    @app.get("/api/run")
    def run(name: str):
        return runs_mod.details(studio.runs_dir, run_folder(name))

    @app.get("/api/run/log")
    def run_log(name: str):
        return runs_mod.curves(run_folder(name))

    @app.get("/api/file")
    def file(path: str):
        p = studio.run_path(path, "file")
        if not p.is_file():
            raise NotFound(f"file {path!r}: not found under the runs folder")
        return FileResponse(p)

    @app.post("/api/generate")
    async def generate(request: Request):
        return job_reply(studio.submit_generate(await body(request)))

    @app.post("/api/interpolate")
    async def interpolate(request: Request):
        return job_reply(studio.submit_interpolate(await body(request)))

    @app.post("/api/compare")
    async def compare(request: Request):
        return job_reply(studio.submit_compare(await body(request)))

    @app.post("/api/edit")
    async def edit(request: Request):
        return job_reply(studio.submit_edit(await body(request)))

    @app.post("/api/upload")
    async def upload(request: Request, name: str = "upload"):
        # The raw body is the file (the page sends it with fetch); it streams to disk under the cap.
        from starlette.concurrency import run_in_threadpool

        length = request.headers.get("content-length")
        target, cap = studio.upload_target(name, int(length) if length and length.isdigit() else None)
        size = 0
        try:
            with open(target, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise _TooLarge(f"upload {name}: larger than the limit of {studio.limits.max_upload_mb:g} MiB")
                    f.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return await run_in_threadpool(studio.check_upload, target, size)

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        return studio.queue.describe(studio.queue.get(job_id))

    @app.get("/api/jobs/{job_id}/{name}")
    def job_file(job_id: str, name: str, download: int = 0):
        j = studio.queue.get(job_id)
        if not JOB_FILES.match(name) or not j.result or name not in j.result.get("files", []):
            raise NotFound(f"job {job_id}: has no file {name!r}")
        return FileResponse(j.folder / name, filename=f"kinema-{j.kind}-{j.id}-{name}" if download else None)

    @app.get("/api/queue")
    def queue():
        return studio.queue.snapshot()

    @app.get("/api/train")
    def training():
        return studio.training()

    @app.post("/api/train")
    async def train(request: Request):
        return studio.start_training(await body(request))

    @app.post("/api/train/stop")
    def train_stop():
        studio.trainer.stop()
        return studio.training()

    return app


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> None:
    import uvicorn

    app = create_app(studio)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        studio.close()
