"""The inference API: serves the newest exported model version over TF Serving's REST shape."""
