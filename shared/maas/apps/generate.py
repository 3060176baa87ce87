"""The generate function's composition root: the OpenAI-compatible routes and Triton's generate extension
over one completion service, behind the Lambda edge, answered whole or streamed."""

from __future__ import annotations
