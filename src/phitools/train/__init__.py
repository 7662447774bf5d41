"""Training: token data (data.py), optimizer and schedule (optim.py), the Trainer (loop.py), checkpoints, parallelism."""
