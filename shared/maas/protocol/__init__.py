"""Wire types and codecs, transport-neutral: Open Inference Protocol V2, KServe V1, explanations and the
registry's documents, with the tensor codec and the validation wording they share.

The HTTP routes (`maas.api`), the event adapters (`maas.events`), the CLI and the batch-job service all
speak through these modules; none of them imports a transport.
"""
