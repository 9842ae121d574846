"""Using a trained model: its preprocessing, predict, evaluate, agreement, analyze and speed (bench)."""
