"""Training code and its image: data preparation, the trainer, the KFP pipeline."""
