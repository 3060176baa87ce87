"""The protocol-neutral data plane: inference, metadata, health and batch jobs over the registry and runtime.

Nothing is imported here, so `maas.service.job_layout` (key names and the job documents) stays free of
onnxruntime for the CLI.
"""
