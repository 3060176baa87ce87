"""maas: PyTorch models exported to ONNX, versioned in S3 and served by AWS Lambda.

The online layers (api, service, runtime, registry) never import torch or onnx; the
offline ones (training, cli, local) may.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
