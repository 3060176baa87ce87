"""POST /v2/models/{name}[/versions/{version}]/infer and /explain, from the proxy event to the encoded answer.

One implementation for both ways in: the router's routes (maas.api.v2_routes) and the infer function's fast
path (maas.api.fast_infer), so validation, limits, canary routing and deadlines cannot drift apart. Nothing
here imports Powertools' event handler: the fast path serves without it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from maas.api.http_body import header, header_length, read_body
from maas.errors import InvalidInput, PayloadTooLarge
from maas.infer_types import InferenceResponse
from maas.protocol.explain_codec import decode_explain_parameters
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import (
    HEADER_LENGTH,
    DecodedInferRequest,
    decode_infer_request,
    encode_infer_response,
)
from maas.protocol.v2_flat_binary import decode_binary_request, encode_binary_response
from maas.protocol.v2_flat_codec import decode_flat_request, encode_json_response
from maas.registry.references import ModelRef, describe_name, parse_ref, parse_version_selector
from maas.service.inference import ROUTING_KEY, InferenceService

MODEL_VERSION_HEADER = "x-maas-model-version"
ROUTING_KEY_HEADER = "x-maas-routing-key"
BINARY_CONTENT_TYPE = "application/octet-stream"
PARSED_PATHS = 1024
# Lambda returns binary bodies base64-encoded, which grows them by a third.
BASE64_GROWTH = 4 / 3

RemainingMs = Callable[[], int] | None


@dataclass(frozen=True, slots=True)
class EncodedAnswer:
    """A 200 answer's body and headers; `binary` answers are Triton's binary format, the others JSON."""

    content: bytes
    headers: dict[str, str]
    binary: bool = False


class V2Inference:
    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.settings = service.settings
        self.limits = TensorLimits.from_settings(service.settings)

    def infer(
        self, event: BaseProxyEvent, name: str, version: str | None, remaining_ms: RemainingMs
    ) -> EncodedAnswer:
        decoded, ref = self.checked_request(event, name, version)
        response = self.service.infer(ref, decoded.request, remaining_ms=remaining_ms)
        return self.encode(response, decoded)

    def explain(
        self, event: BaseProxyEvent, name: str, version: str | None, remaining_ms: RemainingMs
    ) -> EncodedAnswer:
        decoded, ref = self.checked_request(event, name, version)
        parameters = decode_explain_parameters(decoded.request.parameters)
        response = self.service.explain(ref, decoded.request, parameters, remaining_ms=remaining_ms)
        return self.encode(response, decoded)

    def checked_request(
        self, event: BaseProxyEvent, name: str, version: str | None
    ) -> tuple[DecodedInferRequest, ModelRef]:
        """The request and the model its path names, the body's own naming of the model checked."""
        decoded = self.decode(event)
        ref = model_ref(name, version)
        check_body_names(decoded, ref, name, version)
        return decoded, ref

    def decode(self, event: BaseProxyEvent) -> DecodedInferRequest:
        body = read_body(event, self.settings.max_request_bytes, compressed=self.settings.compressed_bodies)
        length = header_length(event, HEADER_LENGTH)
        if length is None:
            decoded = decode_flat_request(body, self.limits)
        else:
            decoded = decode_binary_request(body, length, self.limits)
        if decoded is None:
            decoded = decode_infer_request(body, self.limits, header_length=length)
        routing_key = header(event, ROUTING_KEY_HEADER)
        if routing_key is None:
            return decoded
        request = decoded.request
        return dataclasses.replace(
            decoded,
            request=dataclasses.replace(request, parameters={**request.parameters, ROUTING_KEY: routing_key}),
        )

    def encode(self, response: InferenceResponse, decoded: DecodedInferRequest) -> EncodedAnswer:
        headers = {MODEL_VERSION_HEADER: str(response.model_version)}
        limit = self.settings.max_response_bytes
        wants_binary = decoded.binary_by_default or any(decoded.binary_by_output.values())
        content = None if wants_binary else encode_json_response(response)
        if content is not None:
            check_response_size(len(content), limit)
            return EncodedAnswer(content, headers)
        encoded = encode_binary_response(response, decoded) or encode_infer_response(response, decoded)
        if encoded.header_length is None:
            check_response_size(len(encoded.content), limit)
            return EncodedAnswer(encoded.content, headers)
        check_response_size(int(len(encoded.content) * BASE64_GROWTH), limit)
        headers[HEADER_LENGTH] = str(encoded.header_length)
        return EncodedAnswer(encoded.content, headers, binary=True)


# Parsed once per path a client uses, not once per request: a ModelRef is immutable, and a path that does
# not parse raises, which the cache does not keep. Bounded, as clients choose the paths.
@functools.lru_cache(maxsize=PARSED_PATHS)
def model_ref(name: str, version: str | None) -> ModelRef:
    # API Gateway hands path parameters over still percent-encoded (name%40alias). Without a
    # /versions/ segment the name may carry an alias itself, as everywhere else: seed-mlp@staging.
    if version is None:
        return parse_ref(unquote(name))
    return parse_version_selector(unquote(name), unquote(version))


def check_body_names(decoded: DecodedInferRequest, ref: ModelRef, name: str, version: str | None) -> None:
    """A body may name the model as well (KServe's SDK sends model_name): the path decides, so a body
    that names another model or version is refused rather than silently overruled."""
    path_name = unquote(name)
    if decoded.model_name is not None and decoded.model_name not in (ref.name, path_name):
        expected = repr(ref.name) if path_name == ref.name else f"{ref.name!r} or {path_name!r}"
        raise InvalidInput(
            f"model_name: expected {expected} (the model the path names) or no model_name, "
            f"got {describe_name(decoded.model_name)}"
        )
    if decoded.model_version is None:
        return
    if version is None:
        raise InvalidInput(
            "model_version: expected none, as the path names no version (pin one with "
            f"/v2/models/{ref.name}/versions/{{version}}/...), got {describe_name(decoded.model_version)}"
        )
    path_version = unquote(version)
    if decoded.model_version != path_version:
        raise InvalidInput(
            f"model_version: expected {path_version!r} (the path's version) or no model_version, "
            f"got {describe_name(decoded.model_version)}"
        )


def check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"response: expected at most {limit} bytes (MAAS_MAX_RESPONSE_BYTES, Lambda's payload limit), "
            f"got {size}; send fewer rows, request a subset of outputs, or use the async or batch path"
        )
