"""Training: config tree and presets, losses, augmentation, EMA, checkpoints, the loop.

    from kinema.train import train, get_preset, override
    cfg = override(get_preset("tiny"), data={"source": "builtin:moving_digits"}, log={"out": "runs/x"})
    result = train(cfg)                       # or train(cfg, resume="latest")

Run folder: ``OUT/config.json``, ``OUT/training-state-0000512000.pt``, ``OUT/export-0000512000.safetensors``
(+ ``.json``), ``OUT/log.jsonl``, ``OUT/tb/``, ``OUT/samples/``.
"""

from kinema.train.checkpoint import latest_export, list_exports, list_states, load_state
from kinema.train.config import PRESETS, TrainConfig, from_dict, get_preset, load_json, override, to_json
from kinema.train.loop import TrainingDiverged, TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "TrainingDiverged", "from_dict", "get_preset", "latest_export",
           "list_exports", "list_states", "load_json", "load_state", "override", "to_json", "train"]
