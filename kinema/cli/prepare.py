"""``kinema prepare SRC OUT``: videos (or a built-in dataset) -> clip archive."""

from __future__ import annotations

import sys

from kinema.cli._args import Range
from kinema.data.prepare import MAX_RESOLUTION

NAME = "prepare"
HELP = "decode a folder of videos (or a built-in dataset) into a clip archive for training"
DESCRIPTION = ("Decode SRC once into the archive folder OUT: clips of --frames frames at --resolution, "
               "resampled to --fps. SRC is a folder of videos (class = first-level subfolder name), a folder "
               "of frame folders, or a built-in dataset: builtin:moving_digits, builtin:bouncing_shapes, "
               "builtin:photo_pans. Bad files are set aside with a one-line reason; see OUT/report.json.")
ORDER = 10
RANGES = {"resolution": Range(int, 8, MAX_RESOLUTION), "workers": Range(int, 1, 256)}  # kinema.cli._args


def add_arguments(p) -> None:
    p.add_argument("src", metavar="SRC", help="folder of videos / frame folders, or builtin:NAME")
    p.add_argument("out", metavar="OUT", help="archive folder to write (refused if it exists, unless --force)")
    p.add_argument("--resolution", type=int, default=64, help="square frame side in pixels")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (default: the most common source rate; 8 for built-ins)")
    p.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: --frames)")
    p.add_argument("--crop", choices=["center", "random"], default="center",
                   help="where the square crop sits (random: a seeded offset per video)")
    p.add_argument("--resize", choices=["crop", "pad"], default="crop",
                   help="crop: short side to resolution, then crop; pad: keep aspect, letterbox")
    p.add_argument("--max-clips-per-video", type=int, default=None, help="cap, spread evenly over the video")
    p.add_argument("--channels", type=int, choices=[1, 3], default=None,
                   help="1 = grayscale, 3 = RGB (default 3; built-ins their own)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: usable cores)")
    p.add_argument("--num-videos", type=int, default=None, help="built-ins: how many videos to generate")
    p.add_argument("--seed", type=int, default=0, help="built-in contents and random crops")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (whole, atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from kinema.data.prepare import prepare

    from kinema.progress import Progress

    # A bar on a terminal, a line every 30 s in a log, nothing with --quiet.
    bar = Progress("prepare", unit="videos", enabled=not args.quiet)

    def progress(done: int, total: int) -> None:
        bar.set(done, total)

    try:
        archive = prepare(args.src, args.out, resolution=args.resolution, frames=args.frames, fps=args.fps,
                          stride=args.stride, crop=args.crop, resize=args.resize,
                          max_clips_per_video=args.max_clips_per_video, workers=args.workers, force=args.force,
                          channels=args.channels, num_videos=args.num_videos, seed=args.seed, progress=progress)
    finally:
        bar.close()
    r = archive.report
    print(f"{archive.path}: {archive.num_clips} clips from {r['videos_used']} of {r['videos_found']} videos "
          f"({r['videos_quarantined']} quarantined) in {r['seconds']:.1f} s; content hash {archive.content_hash}",
          file=sys.stderr)
    return 0
