"""``kinema info ARCHIVE``: a readable summary of a prepared archive."""

from __future__ import annotations

NAME = "info"
HELP = "summarise a prepared archive (clips, shape, fps, classes, quarantined files, hash)"
ORDER = 11


def add_arguments(p) -> None:
    p.add_argument("archive", metavar="ARCHIVE", help="folder written by kinema prepare")
    p.add_argument("--quarantined", action="store_true", help="list every quarantined file with its reason")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def summary(archive, list_quarantined: bool = False) -> str:
    """The text ``kinema info`` prints."""
    import numpy as np

    r = archive.report
    h, w = archive.resolution
    lines = [
        f"archive      {archive.path}",
        f"clips        {archive.num_clips} x {archive.frames_per_clip} frames of {h}x{w}, "
        f"{archive.channels} channel{'s' if archive.channels > 1 else ''}, {archive.fps:g} fps "
        f"({archive.frames_per_clip / archive.fps:.2f} s each)",
        f"videos       {r['videos_used']} used of {r['videos_found']} found, {r['videos_quarantined']} quarantined",
        f"frames       {archive.num_frames} stored, source fps {', '.join(f'{k}: {v}' for k, v in r['fps_histogram'].items())}",
        f"durations    total {r['durations_s']['total']:.1f} s, per video {r['durations_s']['min']:.2f}"
        f"-{r['durations_s']['max']:.2f} s (median {r['durations_s']['median']:.2f})",
    ]
    if archive.class_names:
        counts = np.bincount(archive.labels[archive.labels >= 0], minlength=len(archive.class_names))
        shown = ", ".join(f"{name}: {n}" for name, n in zip(archive.class_names, counts))
        unlabelled = int((archive.labels < 0).sum())
        lines.append(f"classes      {len(archive.class_names)}: {shown}" + (f"; {unlabelled} unlabelled" if unlabelled else ""))
    else:
        lines.append("classes      none (unconditional)")
    if r.get("variable_fps"):
        lines.append(f"variable fps {len(r['variable_fps'])} video(s), resampled by timestamps")
    lines.append(f"size         {_size(archive.size_on_disk())} on disk")
    lines.append(f"content hash {archive.content_hash}")
    if list_quarantined:
        lines += [f"quarantined  {q['reason']}" for q in r["quarantined"]]
    elif r["quarantined"]:
        lines.append(f"quarantined  {len(r['quarantined'])} file(s); list them with --quarantined")
    return "\n".join(lines)


def run(args) -> int:
    from kinema.data.archive import REPORT_FILE, open_archive
    from kinema.errors import KinemaError

    archive = open_archive(args.archive)  # index and tables checked; the report is only printed
    try:
        text = summary(archive, args.quarantined)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise KinemaError(f"{archive.path / REPORT_FILE}: not a kinema archive report "
                          f"({type(err).__name__}: {str(err)[:80]})") from None
    print(text)
    return 0
