"""Measured quality of motion-compensated interpolation and of temporally stable neural style.

    python bench/bench_postprocess.py                       # both tables
    python bench/bench_postprocess.py --pictures docs/img   # also the before/after PNGs of docs/postprocessing.md

Interpolation: every second frame of a clip is held out and rebuilt from its two neighbours by
``interpolate_frames(..., method)``; PSNR (dB) of the rebuilt frames against the held-out ones
for ``blend`` and ``motion``. Clips: the encoded fixture of the test suite (smooth gradients
with a moving soft blob, H.264 crf 12), a moving square with a known answer, and the three
built-in datasets (moving digits, bouncing shapes, camera pans over photographs).

Neural style: flicker ratio = mean |consecutive stylised frame difference| / the source's own,
for the temporally stable method (warped initialisation + temporal loss) with its default
flicker bound (1.5) and without it, and for each frame stylised on its own. VGG-19 weights:
random in torchvision's layout unless --weights names the published file (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data.builtin import make_builtin_video
from kinema.edit import interpolate_frames
from kinema.edit.style import flicker_ratio, load_vgg19, look_transfer, neural_style
from kinema.io import read_video, write_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_frames, random_vgg  # noqa: E402  (the test suite's fixture content and weights)


def psnr(x, y) -> float:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def moving_square(n=17, size=64):
    rng = np.random.default_rng(0)
    v = np.repeat((rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)[None], n, 0)
    sq = np.full((16, 16, 3), (230, 80, 40), np.uint8)
    sq[(np.add.outer(np.arange(16), np.arange(16)) // 4) % 2 == 1] = (250, 160, 60)
    for t in range(n):
        y, x = 6 + t, 4 + 2 * t
        v[t, y:y + 16, x:x + 16] = sq
    return v


def clips(size: int, frames: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ramp.mp4"
        write_video(path, make_frames("ramp", frames, (size, size)), fps=25, crf=12)
        fixture = read_video(path).frames
    out = {"fixture ramp (h264)": fixture, "moving square": moving_square(frames, size)}
    for name in ("moving_digits", "bouncing_shapes", "photo_pans"):
        for i in range(2):
            out[f"{name} #{i}"] = make_builtin_video(name, i, frames, size, 0)[0]
    return out


def held_out(frames, method):
    kept = frames[::2]
    return interpolate_frames(kept, 2, method)[1::2], frames[1::2][: len(kept) - 1]


def interpolation_table(size: int, frames: int) -> dict:
    print(f"\nInterpolation, every second frame held out ({size}x{size}, {frames} frames per clip): PSNR dB")
    print(f"{'clip':24s} {'blend':>7s} {'motion':>7s} {'gain':>6s} {'ms/frame':>9s}")
    rows = {}
    for name, v in clips(size, frames).items():
        b, truth = held_out(v, "blend")
        t0 = time.perf_counter()
        m, _ = held_out(v, "motion")
        ms = (time.perf_counter() - t0) / len(m) * 1e3
        rows[name] = (psnr(b, truth), psnr(m, truth))
        print(f"{name:24s} {rows[name][0]:7.2f} {rows[name][1]:7.2f} {rows[name][1] - rows[name][0]:+6.2f} {ms:9.0f}")
    return rows


def style_reference(size: int) -> np.ndarray:
    """Stripes and blobs in saturated colours: a style that differs from every test clip."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([128 + 127 * np.sin(12 * x + 3 * y), 128 + 127 * np.sin(9 * y), 128 + 127 * np.cos(7 * (x + y))], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def style_table(vgg, size: int, frames: int, iterations: int, style_weight: float = 5.0) -> None:
    print(f"\nNeural style flicker ratio ({size}x{size}, {frames} frames, {iterations} iterations for frame 0, "
          f"{iterations // 2} after, style weight {style_weight}): stylised / source frame differences;"
          f" change = mean |out - in| (grey levels), how strongly the style shows")
    print(f"{'clip':24s} {'bounded':>8s} {'change':>7s} {'unbounded':>10s} {'change':>7s} {'per-frame':>10s} {'s':>5s}")
    ref = style_reference(64)
    for name, v in [("fixture ramp", make_frames("ramp", frames, (size, size))),
                    ("moving_digits #0", make_builtin_video("moving_digits", 0, frames, size, 0)[0]),
                    ("photo_pans #0", make_builtin_video("photo_pans", 0, frames, size, 0)[0])]:
        rgb = (np.repeat(v, 3, -1) if v.shape[-1] == 1 else v).astype(np.float64)
        t0 = time.perf_counter()
        out = neural_style(v, ref, vgg, iterations=iterations, style_weight=style_weight)       # default bound 1.5
        sec = time.perf_counter() - t0
        free = neural_style(v, ref, vgg, iterations=iterations, style_weight=style_weight, max_flicker=0)
        single = np.stack([neural_style(f[None], ref, vgg, iterations=iterations, style_weight=style_weight)[0]
                           for f in v])
        print(f"{name:24s} {flicker_ratio(out, v):8.2f} {np.abs(out - rgb).mean():7.1f} {flicker_ratio(free, v):10.2f} "
              f"{np.abs(free - rgb).mean():7.1f} {flicker_ratio(single, v):10.2f} {sec:5.0f}")


def pictures(folder: Path, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)

    def row(images, scale=2):
        images = [np.repeat(i, 3, -1) if i.shape[-1] == 1 else i for i in images]
        gap = np.full((images[0].shape[0], 4, 3), 255, np.uint8)
        strip = np.concatenate([x for i in images for x in (i, gap)][:-1], 1)
        return np.asarray(Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                                        Image.Resampling.NEAREST))

    # Interpolation: frame t-1 | blend | motion | true frame t | frame t+1, on two clips.
    rows = []
    for v in (make_builtin_video("moving_digits", 1, 9, size, 0)[0], make_builtin_video("bouncing_shapes", 0, 9, size, 0)[0],
              moving_square(9, size)):
        a, truth, b = v[2], v[3], v[4]
        pair = np.stack([a, b])
        rows.append(row([a, interpolate_frames(pair, 2, "blend")[1], interpolate_frames(pair, 2, "motion")[1],
                         truth, b]))
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for r in rows for x in (r, gap)][:-1])).save(folder / "interpolate-motion.png",
                                                                                   optimize=True)
    # Look: source frame | reference | result, for two photographs.
    pans, label = make_builtin_video("photo_pans", 0, 4, size, 0)
    ref = next(v[0] for v, y in (make_builtin_video("photo_pans", i, 1, size, 0) for i in range(1, 50)) if y != label)
    rows = [row([pans[0], ref, look_transfer(pans, ref)[0]]),
            row([pans[0], style_reference(size), look_transfer(pans, style_reference(size))[0]])]
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([rows[0], gap, rows[1]])).save(folder / "style-look.png", optimize=True)
    print(f"\nwrote {folder / 'interpolate-motion.png'} and {folder / 'style-look.png'}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--style-size", type=int, default=32)
    p.add_argument("--style-frames", type=int, default=6)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--style-weight", type=float, default=5.0)
    p.add_argument("--weights", default=None, help="torchvision vgg19-dcbb9e9d.pth (default: random weights)")
    p.add_argument("--skip-style", action="store_true")
    p.add_argument("--skip-interpolation", action="store_true")
    p.add_argument("--pictures", type=Path, default=None, help="write the docs' before/after PNGs here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.skip_interpolation:
        interpolation_table(args.size, args.frames)
    if not args.skip_style:
        vgg = load_vgg19(args.weights)[0] if args.weights else random_vgg()
        style_table(vgg, args.style_size, args.style_frames, args.iterations, args.style_weight)
    if args.pictures:
        pictures(args.pictures, args.size)


if __name__ == "__main__":
    main()
