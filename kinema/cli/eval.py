"""``kinema eval --metric fvd2048_16f --real ARCHIVE|FOLDER --fake EXPORT|FOLDER``: named metrics."""

from __future__ import annotations

from kinema.cli._args import SAMPLER_RANGES, add_sampler_arguments

NAME = "eval"
HELP = "evaluate generated videos against real ones under named protocols (FVD, KVD, FID, KID, IS)"
ORDER = 60
RANGES = SAMPLER_RANGES  # kinema.cli._args


def add_arguments(p) -> None:
    from kinema.metrics.protocols import PROTOCOLS

    p.add_argument("--metric", action="append", required=True, metavar="PROTOCOL",
                   help=f"protocol name, repeatable: {', '.join(PROTOCOLS)}")
    p.add_argument("--real", default=None, help="real videos: a kinema archive folder, a folder of video files, "
                                                 "or builtin:NAME (prepared at the export's clip size)")
    p.add_argument("--fake", required=True,
                   help="generated videos: a training export (.safetensors; generates with seeds SEED..) or a folder")
    p.add_argument("--extractor", choices=["builtin", "i3d", "inception"], default="builtin",
                   help="feature network; builtin needs no download but is NOT comparable to published numbers")
    p.add_argument("--weights", default=None,
                   help="extractor weights file or folder (else $KINEMA_WEIGHTS); nothing is downloaded")
    p.add_argument("--out", default=None, help="append results to this jsonl file")
    p.add_argument("--num", type=int, default=None, help="override the protocol's real and fake counts (recorded)")
    p.add_argument("--seed", type=int, default=0, help="seed of real-clip sampling and first fake seed")
    p.add_argument("--batch", type=int, default=16, help="clips per extractor batch")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache (default $KINEMA_CACHE/metrics)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_sampler_arguments(p)  # flow models: how --fake's videos are sampled (recorded in the results)


def run(args) -> int:
    from kinema.metrics.evaluate import evaluate
    from kinema import dist

    # Under torchrun: one device per rank (cuda:LOCAL_RANK), clips sharded, rank 0 writes.
    device = str(dist.init(args.device)) if dist.is_torchrun() else args.device
    with dist.session():
        evaluate(args.metric, args.real, args.fake, extractor=args.extractor, weights=args.weights, out=args.out,
                 num=args.num, seed=args.seed, batch_size=args.batch, cache_dir=args.cache_dir, device=device,
                 sampler={"steps": args.steps, "cfg": args.cfg, "solver": args.solver})
    return 0
