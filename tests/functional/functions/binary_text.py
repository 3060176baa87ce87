"""A BYTES tensor in Triton's binary form: the one way to send text that is not UTF-8, and a second way
every text check has to hold for."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

# Lowercase, as HTTP API events carry every header name.
HEADER_LENGTH = "inference-header-content-length"


def binary_text_body(items: Sequence[bytes], name: str = "text") -> tuple[dict[str, str], bytes]:
    """The headers and body of a V2 request whose one input, `name`, carries `items` as binary BYTES."""
    chunk = b"".join(struct.pack("<I", len(item)) + item for item in items)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": [len(items)],
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ]
        }
    ).encode()
    return {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}, header + chunk
