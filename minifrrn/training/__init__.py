"""Training, evaluation and prediction on top of the models, data and metrics."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .predict import predict_images
from .trainer import (RUN_SETTINGS, TrainConfig, Trainer, TrainingDiverged, evaluate_checkpoint,
                      evaluate_model, load_model, predict_scores, resize_scores, run_config, train)

__all__ = ["TrainConfig", "Trainer", "train", "TrainingDiverged", "evaluate_model",
           "evaluate_checkpoint", "load_model", "predict_scores", "resize_scores", "predict_images",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "run_config", "RUN_SETTINGS"]
