"""``kinema encode INPUT OUTPUT``: re-encode a video file or frame folder to another codec/format."""

from __future__ import annotations

import itertools
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError
from kinema.cli._args import NONNEG_INT
from kinema.io import CODECS, VideoWriter, iter_frames, probe, resample_fps

NAME = "encode"
HELP = "convert a video file or frame folder to another codec/format (mp4, webm, gif, png frames, ...)"
DESCRIPTION = (
    "Stream INPUT (any video FFmpeg reads, or a folder of numbered PNG/JPG frames) into OUTPUT. "
    "The codec follows OUTPUT's extension unless --codec is given (.mp4 h264, .webm vp9, .gif, "
    ".mkv with --codec lossless, a folder with --codec png). OUTPUT '-' writes to stdout "
    "(use --format, e.g. mpegts or nut). Frames are retimed by their timestamps when --fps differs "
    "from the source or the source has a variable frame rate."
)
ORDER = 30

RANGES = {"start": NONNEG_INT}  # numeric options that are not "integer >= 1" (kinema.cli._args)


def add_arguments(parser) -> None:
    parser.add_argument("input", help="video file or folder of numbered frames")
    parser.add_argument("output", help="output file, folder (png) or '-' for stdout")
    parser.add_argument("--codec", choices=sorted(CODECS), default=None,
                        help="codec (default: from the output extension)")
    parser.add_argument("--crf", type=int, default=None, help="quality, lower is better (codec default if unset)")
    parser.add_argument("--preset", default=None,
                        help="speed preset: x264/x265 names (ultrafast..veryslow), vp9 cpu-used 0-8, av1 0-13")
    parser.add_argument("--fps", default=None,
                        help="output frame rate, e.g. 24 or 30000/1001 (default: the source's; frame folders: 30)")
    parser.add_argument("--start", type=int, default=0, help="first source frame to keep")
    parser.add_argument("--frames", type=int, default=None, help="number of source frames to keep (default all)")
    parser.add_argument("--odd", choices=["pad", "error"], default="pad",
                        help="odd width/height with 4:2:0 codecs: pad by repeating the edge, or refuse")
    parser.add_argument("--format", default=None, help="container format for '-' (mpegts, nut, matroska, ...)")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")


def run(args) -> int:
    folder_fps = float(_fraction(args.fps)) if args.fps and Path(args.input).is_dir() else None
    info = probe(args.input, fps=folder_fps)
    out_fps = args.fps or info.fps
    frames = iter_frames(args.input, args.start, args.frames, fps=folder_fps)
    if info.variable_fps or (args.fps and abs(float(_fraction(args.fps)) - info.fps) > 1e-6):
        stream = resample_fps(frames, float(_fraction(out_fps)))
    else:
        stream = (frame for frame, _ in frames)
    with VideoWriter(args.output, out_fps, args.codec, crf=args.crf, preset=args.preset, odd=args.odd,
                     overwrite=args.force, format=args.format) as writer:
        # Feed in small batches: bounded memory whatever the length.
        while batch := list(itertools.islice(stream, 32)):
            writer.write(np.stack(batch))  # [<=32, H, W, 3]
    report = sys.stderr  # success messages go to stderr, like every command's (stdout: data only)
    print(f"wrote {writer.path}: {writer.frames_written} frames, {writer.size[1]}x{writer.size[0]}, "
          f"{float(writer.rate):.3f} fps, {writer.codec}", file=report)
    return 0


def _fraction(text) -> Fraction:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        raise KinemaError(f"--fps: expected a number or a ratio like 30000/1001, got {text!r}") from None
    if value <= 0:
        raise KinemaError(f"--fps: must be positive, got {text}")
    return value
