"""Explanations served next to predictions: perturbation attributions computed through onnxruntime."""
