"""Commands around a trained model: predict, export, analyze, bench, models, demo (one module each)."""
