"""Post-processing of videos as uint8 frame arrays ``[T, H, W, C]``.

* :mod:`kinema.edit.ops` - time: trim, speed, fps conversion, frame interpolation, reverse, loop,
  concat, crossfade, fades;
* :mod:`kinema.edit.spatial` - space: resize (Lanczos/area/...), crop, pad, fit;
* :mod:`kinema.edit.look` - colour filters and text overlays;
* :mod:`kinema.edit.motion` - motion-compensated frame interpolation;
* :mod:`kinema.edit.style` - a reference's colour look (no weights) or neural style (VGG-19);
* :mod:`kinema.edit.upscale` - learned super-resolution trained on your own archive.

Decoding and encoding stay in :mod:`kinema.io`; ``kinema edit`` glues the two.
"""

from kinema.edit.look import brightness_contrast, caption, frame_counter, grayscale, sepia
from kinema.edit.ops import (change_fps, concat, crossfade, fade, interpolate_frames, loop, reverse,
                             speed, trim)
from kinema.edit.spatial import crop, fit, pad, pad_to, resize

__all__ = ["trim", "speed", "change_fps", "interpolate_frames", "reverse", "loop", "concat", "crossfade",
           "fade", "resize", "crop", "pad", "pad_to", "fit", "grayscale", "brightness_contrast", "sepia",
           "caption", "frame_counter"]
