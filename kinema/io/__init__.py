"""Video I/O: the only place frames meet files and model tensors.

- reading (``video.py``): ``probe``, ``iter_frames``, ``read_video``, ``resample_fps``
- writing (``write.py``): ``write_video``, ``VideoWriter``, ``CODECS``
- grids (``grid.py``): ``tile``, ``write_grid_png``, ``write_grid_video``
- tensors (``convert.py``): ``to_uint8``, ``from_uint8``

Layouts: frames are uint8 numpy ``[T, H, W, C]`` (``[B, T, H, W, C]`` for a batch); model tensors are
float ``[B, C, T, H, W]`` in [-1, 1].
"""

from kinema.io.convert import from_uint8, to_uint8
from kinema.io.grid import tile, write_grid_png, write_grid_video
from kinema.io.video import (Video, VideoInfo, iter_frames, list_frame_files, probe, read_video, resample_fps,
                             resample_times)
from kinema.io.write import CODECS, VideoWriter, write_video

__all__ = [
    "CODECS", "Video", "VideoInfo", "VideoWriter", "from_uint8", "iter_frames", "list_frame_files", "probe",
    "read_video", "resample_fps", "resample_times", "tile", "to_uint8", "write_grid_png", "write_grid_video", "write_video",
]
