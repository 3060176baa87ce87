"""The local stack `make serve` runs (maas.local.stack.LocalStack over template.yaml) in a process of its
own, on the bench store: the server side of the LLM cases over HTTP.

`python -m benchmarks.llm_stack_process <url file>`: the environment points at the bench store
(AWS_ENDPOINT_URL, MAAS_BUCKET, dummy keys). The stack seeds nothing, since the bench store already holds
the models. Once the gateway listens on a free port, its URL is written to the file; the process then
serves until it is terminated.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from maas.local.stack import LocalStack


def main() -> None:
    url_file = Path(sys.argv[1])
    with LocalStack(port=0) as stack:
        url_file.write_text(stack.url)
        threading.Event().wait()


if __name__ == "__main__":
    main()
