//! Training: losses, Adam, learning-rate schedules, the training loop, checkpoints.
