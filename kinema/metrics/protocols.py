"""Named evaluation protocols: the name states the metric, the sample counts and the clip length.

Everything that changes the number is part of the protocol and is written into every result:
how many real and fake clips, how many frames, how real clips are drawn (``real_sampling``),
which part of the real data (``split``), the covariance estimator, KID subsets, IS splits, and
the extractor's own resize rule (recorded by the evaluator from the extractor).

Real-clip sampling rules:
* ``one_clip_per_video``: a seeded random subset of ``num_real`` source videos (those with at
  least ``frames`` frames), one clip of ``frames`` consecutive frames from each at a seeded
  random offset (StyleGAN-V's rule for fvd2048_16f). Too few long-enough videos is an error.
* ``random_frames``: ``num_real`` single frames drawn without replacement, seeded, from all
  frames of all source videos (FID-style frame protocols).

Each protocol names the public code it reproduces (``reference``) and uses that code's
covariance estimator (``cov_ddof``: the covariance divides by N - cov_ddof):

* video protocols (fvd*, kvd*, is*): StyleGAN-V's ``metrics/frechet_video_distance.py`` and
  ``video_inception_score.py``, whose feature statistics divide by N (``cov_ddof = 0``);
* frame protocols (fid*, kid*): pytorch-fid / clean-fid (``np.cov``, unbiased, ``cov_ddof = 1``).

Fake samples: ``num_fake`` clips of ``frames`` frames, video ``i`` generated from seed
``seed + i`` (or, for a folder of videos, the same sampling rule as the real side). For frame
protocols, the fake frames are all frames of ``ceil(num_fake / frames)`` clips, truncated.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from kinema.errors import KinemaError


STYLEGAN_V = "StyleGAN-V (universome/stylegan-v, metrics/frechet_video_distance.py): covariance / N"
PYTORCH_FID = "pytorch-fid / clean-fid (mseitzer/pytorch-fid, GaParmar/clean-fid): np.cov, covariance / (N - 1)"
KINEMA_BUILTIN = "kinema built-in classifier (kinema.metrics.digits)"
KINEMA_MOTION = "kinema motion measures (kinema.metrics.motion, docs/motion.md)"


@dataclass(frozen=True)
class Protocol:
    name: str
    metric: str                 # "fvd" | "kvd" | "fid" | "kid" | "is" | "digits" | "shapes" | "motion"
    num_real: int               # real clips (or frames for unit == "frame"); 0 = none needed (IS)
    num_fake: int
    frames: int                 # frames per clip (0: the source's own clip length)
    unit: str = "clip"          # "clip": video features; "frame": image features of single frames
    real_sampling: str = "one_clip_per_video"
    split: str = "all"          # the whole real source (kinema archives have no train/test split)
    cov_ddof: int = 0           # covariance divides by N - cov_ddof: 0 StyleGAN-V (FVD), 1 pytorch-fid/clean-fid
    reference: str = STYLEGAN_V  # the public code whose number this protocol reproduces
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10

    def to_dict(self) -> dict:
        return asdict(self)

    def with_num(self, num: int | None) -> "Protocol":
        """The same protocol with ``num`` real and fake samples (recorded as an override)."""
        if num is None:
            return self
        if num < 2:
            raise KinemaError(f"--num must be at least 2, got {num}")
        return replace(self, num_real=num if self.num_real else 0, num_fake=num,
                       kid_subset_size=min(self.kid_subset_size, num), is_splits=min(self.is_splits, max(1, num // 2)))


def _clip(name, metric, n, frames, **kw):
    return Protocol(name, metric, 0 if metric == "is" else n, n, frames, **kw)


def _frames(name, metric, n, **kw):
    """A frame protocol (FID / KID on single frames): pytorch-fid / clean-fid's unbiased covariance."""
    return Protocol(name, metric, n, n, 16, unit="frame", real_sampling="random_frames", cov_ddof=1,
                    reference=PYTORCH_FID, **kw)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    # The published-style protocols.
    _clip("fvd2048_16f", "fvd", 2048, 16),
    _clip("fvd2048_128f", "fvd", 2048, 128),
    _clip("kvd2048_16f", "kvd", 2048, 16),
    _clip("is2048_16f", "is", 2048, 16),
    _frames("fid50k_frames", "fid", 50000),
    _frames("kid50k_frames", "kid", 50000),
    # Small ones for offline checks, tests and the training proxy (noisier; say so when you report).
    _clip("fvd256_16f", "fvd", 256, 16),
    _clip("fvd128_16f", "fvd", 128, 16),
    _clip("kvd256_16f", "kvd", 256, 16),
    _clip("is256_16f", "is", 256, 16),
    _frames("fid2k_frames", "fid", 2048),
    # Built-in dataset scores (kinema.metrics.digits): no extractor, no real pass; the value is
    # the fraction of recognised frames, the result also carries consistency and the histogram.
    # frames = 0: the source's own clip length (the generator's frames, the archive's clips).
    Protocol("digits256", "digits", 0, 256, 0, real_sampling="none", reference=KINEMA_BUILTIN),
    Protocol("shapes256", "shapes", 0, 256, 0, real_sampling="none", reference=KINEMA_BUILTIN),
    # Motion measures (kinema.metrics.motion): real vs generated clips, no extractor. The value is
    # the motion distance (0 = the same motion statistics, 1 = disjoint); the result also carries
    # speed/travel/bounce ratios, near-static clips and identity for built-in single-object data.
    _clip("motion256_16f", "motion", 256, 16, reference=KINEMA_MOTION),
]}


# A name that states its protocol: fvd2048_16f, kvd512_8f, is256_16f, motion64_16f; fid50k_frames, kid2k_frames.
_CLIP_NAME = re.compile(r"^(fvd|kvd|is|motion)(\d+)(k?)_(\d+)f$")
_FRAME_NAME = re.compile(r"^(fid|kid)(\d+)(k?)_frames$")


def get_protocol(name: str) -> Protocol:
    """The protocol of a name: one from the table, or any name of the standard forms
    ``{fvd|kvd|is|motion}{N}_{T}f`` (N clips of T frames, one clip per video) and ``{fid|kid}{N}[k]_frames``
    (N single frames), so the name alone says what was measured."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    if m := _CLIP_NAME.match(name):
        metric, n, frames = m.group(1), int(m.group(2)) * (1000 if m.group(3) else 1), int(m.group(4))
        if n >= 2 and frames >= 1:
            extra = {"reference": KINEMA_MOTION} if metric == "motion" else {}
            return _clip(name, metric, n, frames, kid_subset_size=min(1000, n), is_splits=min(10, max(1, n // 2)),
                         **extra)
    elif m := _FRAME_NAME.match(name):
        metric, n = m.group(1), int(m.group(2)) * (1000 if m.group(3) else 1)
        if n >= 2:
            return _frames(name, metric, n, kid_subset_size=min(1000, n))
    raise KinemaError(f"--metric {name}: unknown protocol; known: {', '.join(PROTOCOLS)}, or any name of the "
                      "forms fvdN_Tf, kvdN_Tf, isN_Tf, motionN_Tf, fidN_frames, kidN_frames (N samples, T frames; Nk = N x 1000)")
