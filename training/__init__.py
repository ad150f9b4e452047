"""The training loop: strategies, schedules, progressive learning, checkpoints."""
