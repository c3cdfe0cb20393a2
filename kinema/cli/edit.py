"""``kinema edit OP INPUT... OUTPUT``: post-processing of any readable video."""

from __future__ import annotations

import argparse

from kinema.cli._args import MAX_SIDE, NONNEG, NONNEG_INT, RATE, SIDE, Range

NAME = "edit"
HELP = "edit videos: trim, concat, speed, fps, interpolate, crossfade, resize, style, upscale, ..."
ORDER = 45
# Numeric options that are not "integer >= 1 / real > 0" (kinema.cli._args).
RANGES = {"trim.start": NONNEG, "trim.end": NONNEG, "fade.fade_in": NONNEG, "fade.fade_out": NONNEG,
          "resize.width": SIDE, "resize.height": SIDE, "crop.width": SIDE, "crop.height": SIDE,
          "crop.x": Range(int, 0, MAX_SIDE), "crop.y": Range(int, 0, MAX_SIDE),
          "left": Range(int, 0, MAX_SIDE), "top": Range(int, 0, MAX_SIDE),
          "right": Range(int, 0, MAX_SIDE), "bottom": Range(int, 0, MAX_SIDE),
          "caption.size": Range(int, 1, 1024), "counter.size": Range(int, 1, 1024), "counter.start": NONNEG_INT,
          "sepia.amount": NONNEG, "color.brightness": Range(float, -1, 1), "color.contrast": NONNEG,
          "interpolate.factor": Range(int, 2, 16), "loop.times": Range(int, 1, 10000),
          "speed.factor": Range(float, 1e-3, 1e3), "style.strength": Range(float, 0, 1),
          "style.iterations": Range(int, 1, 100000), "style.style_weight": NONNEG, "style.temporal_weight": NONNEG,
          "style.max_flicker": Range(float, 0, 100)}
DESCRIPTION = """Edit a video (or join several): kinema edit OP INPUT... OUTPUT [options]. The input is
decoded whole (uint8 frames in memory), edited, and encoded atomically to OUTPUT (the codec follows
the extension unless --codec is given; lossless keeps frames exact). Times are in seconds."""


def _color(text: str) -> tuple[int, int, int]:
    """'0,0,0' or 'black'/'white' -> an RGB triple."""
    named = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
    if text in named:
        return named[text]
    try:
        rgb = tuple(int(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise argparse.ArgumentTypeError(f"colour must be R,G,B in 0..255 or black/white/gray, got {text!r}")
    return rgb


# name -> (help, extra arguments, needs N inputs: 1, 2 or "+")
def _ops():
    from kinema.edit import look, ops, spatial
    from kinema.edit.ops import seconds_to_frames as s2f

    def trim(a, v):
        (f, fps), = v
        if a.by_frame:
            return ops.trim(f, fps, a.start, a.end, unit="frame"), fps
        return ops.trim(f, fps, a.start, a.end), fps

    def concat(a, v):
        return ops.concat(v, "fit" if a.fit else "refuse", names=a.inputs)

    def crossfade(a, v):
        (f1, fps1), (f2, fps2) = v
        if abs(fps1 - fps2) > 1e-3:
            raise _err(f"crossfade: {a.inputs[1]} is {fps2:g} fps but {a.inputs[0]} is {fps1:g} fps")
        return ops.crossfade(f1, f2, s2f(a.seconds, fps1, "crossfade")), fps1

    def fade(a, v):
        (f, fps), = v
        return ops.fade(f, s2f(a.fade_in, fps, "fade in"), s2f(a.fade_out, fps, "fade out"), a.color), fps

    def one(fn):
        def apply(a, v):
            (f, fps), = v
            return fn(a, f, fps)
        return apply

    def upscale(a, v):
        from kinema.edit.upscale import load_upscaler, upscale as up
        (f, fps), = v
        model, _ = load_upscaler(a.model, device=a.device)
        return up(f, model, batch=a.batch, device=a.device), fps

    def style(a, v):
        import sys

        from kinema.edit import style as st
        (f, fps), = v
        ref = st.read_reference(a.reference)
        if a.method == "look":
            return st.look_transfer(f, ref, a.strength), fps
        vgg, _ = st.load_vgg19(a.weights)
        out = st.neural_style(f, ref, vgg, iterations=a.iterations, style_weight=a.style_weight,
                              temporal_weight=a.temporal_weight, max_flicker=a.max_flicker,
                              progress=lambda i, n: print(f"\rstylised {i}/{n} frames", end="", file=sys.stderr))
        print(f"\nflicker {st.flicker_ratio(out, f):.2f}x the source's", file=sys.stderr)
        return out, fps

    return {
        "trim": ("keep [--start, --end) (seconds, or frame indices with --by-frame)", trim, 1, [
            (("--start",), dict(type=float, default=0.0, help="first kept time (or frame)")),
            (("--end",), dict(type=float, default=None, help="end time (or frame), exclusive; None = to the end")),
            (("--by-frame",), dict(action="store_true", help="--start/--end are frame indices"))]),
        "concat": ("join videos end to end", concat, "+", [
            (("--fit",), dict(action="store_true", help="resize/resample mismatched inputs to the first's size and fps"))]),
        "speed": ("play FACTOR times faster (x2 keeps every other frame)", one(
            lambda a, f, fps: (ops.speed(f, a.factor, "blend" if a.blend else "nearest"), fps)), 1, [
            (("--factor",), dict(type=float, required=True)), (("--blend",), dict(action="store_true"))]),
        "fps": ("convert the frame rate, keeping duration", one(
            lambda a, f, fps: (ops.change_fps(f, fps, float(a.to), "blend" if a.blend else "nearest"), a.to)), 1, [
            (("--to",), dict(type=RATE, required=True, help="new frame rate, e.g. 24 or 30000/1001")),
            (("--blend",), dict(action="store_true", help="blend neighbours instead of repeating/dropping"))]),
        "interpolate": ("raise the frame rate FACTOR times with in-between frames (blended or motion-compensated)", one(
            lambda a, f, fps: (ops.interpolate_frames(f, a.factor, a.method), fps * a.factor)), 1, [
            (("--factor",), dict(type=int, default=2)),
            (("--method",), dict(default="blend", choices=["blend", "motion"],
                                 help="blend: cross-fade neighbours; motion: warp both along estimated motion"))]),
        "reverse": ("play backwards", one(lambda a, f, fps: (ops.reverse(f), fps)), 1, []),
        "loop": ("repeat TIMES times", one(lambda a, f, fps: (ops.loop(f, a.times, a.pingpong), fps)), 1, [
            (("--times",), dict(type=int, default=2)), (("--pingpong",), dict(action="store_true"))]),
        "crossfade": ("join two videos with a dissolve of --seconds", crossfade, 2, [
            (("--seconds",), dict(type=float, default=0.5))]),
        "fade": ("fade in from / out to a colour", fade, 1, [
            (("--in",), dict(dest="fade_in", type=float, default=0.0, help="seconds")),
            (("--out",), dict(dest="fade_out", type=float, default=0.0, help="seconds")),
            (("--color",), dict(type=_color, default=(0, 0, 0)))]),
        "resize": ("resize (a missing side keeps the aspect ratio)", one(
            lambda a, f, fps: (spatial.resize(f, a.width, a.height, a.scale, a.filter), fps)), 1, [
            (("--width",), dict(type=int)), (("--height",), dict(type=int)), (("--scale",), dict(type=float)),
            (("--filter",), dict(default="lanczos", choices=list(spatial.FILTERS)))]),
        "crop": ("cut a window (centred unless --x/--y)", one(
            lambda a, f, fps: (spatial.crop(f, a.width, a.height, a.x, a.y), fps)), 1, [
            (("--width",), dict(type=int, required=True)), (("--height",), dict(type=int, required=True)),
            (("--x",), dict(type=int)), (("--y",), dict(type=int))]),
        "pad": ("add borders", one(
            lambda a, f, fps: (spatial.pad(f, a.left, a.top, a.right, a.bottom, a.color), fps)), 1, [
            (("--left",), dict(type=int, default=0)), (("--top",), dict(type=int, default=0)),
            (("--right",), dict(type=int, default=0)), (("--bottom",), dict(type=int, default=0)),
            (("--color",), dict(type=_color, default=(0, 0, 0)))]),
        "caption": ("draw a text caption on every frame", one(
            lambda a, f, fps: (look.caption(f, a.text, a.position, a.size, font=a.font), fps)), 1, [
            (("--text",), dict(required=True)), (("--position",), dict(default="bottom")),
            (("--font",), dict(default=None, help="TrueType/OpenType file (default: Pillow's font; for other "
                                                 "than ASCII text a common system font with the glyphs)")),
            (("--size",), dict(type=int, default=None, help="font pixel size (default: height/12)"))]),
        "counter": ("draw the frame number and time on every frame", one(
            lambda a, f, fps: (look.frame_counter(f, fps, a.start, a.position, a.size), fps)), 1, [
            (("--start",), dict(type=int, default=0)), (("--position",), dict(default="top-left")),
            (("--size",), dict(type=int, default=None))]),
        "grayscale": ("BT.601 luma in three channels", one(lambda a, f, fps: (look.grayscale(f), fps)), 1, []),
        "sepia": ("warm brown tone", one(lambda a, f, fps: (look.sepia(f, a.amount), fps)), 1, [
            (("--amount",), dict(type=float, default=1.0))]),
        "color": ("brightness / contrast", one(
            lambda a, f, fps: (look.brightness_contrast(f, a.brightness, a.contrast), fps)), 1, [
            (("--brightness",), dict(type=float, default=0.0, help="-1..1")),
            (("--contrast",), dict(type=float, default=1.0, help=">= 0"))]),
        "style": ("give the video a reference image's look (colour statistics) or style (VGG-19)", style, 1, [
            (("--reference",), dict(required=True, help="reference image (or video: its first frame)")),
            (("--method",), dict(default="look", choices=["look", "neural"],
                                 help="look: match Lab mean/covariance, no weights; neural: Gatys-style with VGG-19")),
            (("--strength",), dict(type=float, default=1.0, help="look: 0 = input, 1 = full match")),
            (("--weights",), dict(default=None, help="neural: torchvision vgg19-dcbb9e9d.pth (file or folder; "
                                                      "default: $KINEMA_WEIGHTS)")),
            (("--iterations",), dict(type=int, default=100, help="neural: steps for the first frame (half for the rest)")),
            (("--style-weight",), dict(type=float, default=5.0, help="neural: style against content")),
            (("--temporal-weight",), dict(type=float, default=200.0,
                                          help="neural: pull towards the previous stylised frame (less flicker)")),
            (("--max-flicker",), dict(type=float, default=1.5,
                                      help="neural: each pixel changes at most K times as much as the source's (0 = "
                                           "off); bounds the flicker ratio by K"))]),
        "upscale": ("learned super-resolution (model from kinema train-upscaler)", upscale, 1, [
            (("--model",), dict(required=True, help="upscaler .safetensors")),
            (("--batch",), dict(type=int, default=8)), (("--device",), dict(default="cpu"))]),
    }


def _err(msg):
    from kinema.errors import KinemaError
    return KinemaError(msg)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="op", metavar="OP", required=True)
    for name, (help_, fn, n, extra) in _ops().items():
        p = sub.add_parser(name, help=help_, description=help_,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if n == 1:
            p.add_argument("inputs", nargs=1, metavar="INPUT", help="input video (file or frame folder)")
        elif n == 2:
            p.add_argument("inputs", nargs=2, metavar="INPUT", help="first and second video")
        else:
            p.add_argument("inputs", nargs="+", metavar="INPUT", help="two or more videos, in order")
        p.add_argument("output", metavar="OUTPUT", help="output video (a folder with --codec png)")
        for flags, kw in extra:
            p.add_argument(*flags, **kw)
        p.add_argument("--codec", default=None, help="h264, hevc, vp9, av1, gif, lossless, png; None = from the extension")
        p.add_argument("--crf", type=int, default=None, help="quality (lower = better)")
        p.add_argument("--force", action="store_true", help="replace an existing output")
        p.set_defaults(_edit=fn, _inputs=n)


def run(args) -> int:
    import sys

    from kinema.errors import KinemaError
    from kinema.fsutil import refuse_existing
    from kinema.io import read_video
    from kinema.io.write import codec_for
    from kinema.sample.api import save_video

    if args._inputs == "+" and len(args.inputs) < 2:
        raise KinemaError(f"edit {args.op}: needs at least two inputs before the output")
    refuse_existing(args.output, args.force)
    codec = codec_for(args.output, args.codec)  # unknown codecs fail before any decoding
    videos = []
    for path in args.inputs:
        v = read_video(path)
        videos.append((v.frames, v.fps))
    frames, fps = args._edit(args, videos)
    save_video(frames, args.output, fps=fps, codec=codec, crf=args.crf, force=True)
    # What the file holds (4:2:0 codecs pad odd sizes to even ones), not what was asked for.
    from kinema.io import probe

    info = probe(args.output, fps=float(fps))
    padded = " (padded to even for this codec)" if (info.width, info.height) != (frames.shape[2], frames.shape[1]) else ""
    print(f"wrote {args.output}: {info.num_frames} frames {info.width}x{info.height}{padded} at {float(fps):g} fps",
          file=sys.stderr)
    return 0

