"""Training: the recipe, one loop for supernet and fixed networks, resume, DDP, BN recalibration."""

from spos.nn.calibration import recalibrate_bn
from spos.train.config import available_configs, load_config
from spos.train.evaluation import evaluate
from spos.train.loop import Trainer, run_training
from spos.train.setup import RunResult

__all__ = ["RunResult", "Trainer", "available_configs", "evaluate", "load_config", "recalibrate_bn", "run_training"]
