"""Event adapters: S3 job uploads and async requests arriving over SQS, direct invokes and warm-up.

`layout` (key names and the status and result documents) imports no onnxruntime, so the CLI can use it.
"""
