"""Export (SavedModel, TFLite) and prediction."""
