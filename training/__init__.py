"""The training loop: strategies, schedules, progressive learning, optimizers, initial
weights, reporting (checkpoints and run folders: `efficientnetv2.run_folder`)."""
