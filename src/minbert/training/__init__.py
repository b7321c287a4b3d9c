"""Training: the loop (trainer.py) and the checkpoint state it saves and restores (state.py)."""
