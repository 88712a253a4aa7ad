"""What a Backbone can be trained to predict: one list for the models, the generation settings and
the training config (a light module: the CLI parser reads it without importing the models)."""

PREDICTION_TYPES = ("epsilon", "v_prediction")
