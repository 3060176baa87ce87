"""Explain requests and responses at the edges: their parameters validated, and the KServe V1 answer.

V2 answers are ordinary inference responses: the predictions, then one `<input>_attribution` tensor per
input (and `<input>_tokens` for text), with the method's settings under `parameters.explanation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from maas.errors import InvalidInput
from maas.explain.parameters import ATTRIBUTION_SUFFIX, EXPLANATION, TOKENS_SUFFIX, ExplainParameters
from maas.infer_types import InferenceResponse
from maas.protocol.v1_codec import predictions
from maas.protocol.v1_types import V1ExplainResponse
from maas.protocol.validation_messages import describe_validation_error


class _Envelope(BaseModel):
    # Validation errors then name their field as parameters.<name>. Built by the first explain request.
    model_config = ConfigDict(defer_build=True)

    parameters: ExplainParameters


def decode_explain_parameters(parameters: dict[str, Any]) -> ExplainParameters:
    try:
        return _Envelope.model_validate({"parameters": parameters}).parameters
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None


def encode_v1_explain_response(response: InferenceResponse) -> str:
    """{"predictions": [...], "explanations": [one per instance], "parameters": {the method's settings}}.

    An instance's explanation is its attribution shaped like it (an object per input for several inputs);
    a text's is {"tokens": [...], "attributions": [...]} over its own tokens."""
    settings = response.parameters[EXPLANATION]
    attribution_names = set(settings["attributions"])
    predicted = [tensor for tensor in response.outputs if tensor.name not in attribution_names]
    attributions = {
        tensor.name: tensor.array for tensor in response.outputs if tensor.name in attribution_names
    }
    rows = len(settings["target"])
    token_inputs = [name[: -len(TOKENS_SUFFIX)] for name in attributions if name.endswith(TOKENS_SUFFIX)]
    explanations: list[Any] = []
    for row in range(rows):
        if token_inputs:
            (text,) = token_inputs
            tokens = [token for token in attributions[text + TOKENS_SUFFIX][row].tolist() if token != ""]
            scores = attributions[text + ATTRIBUTION_SUFFIX][row][: len(tokens)]
            explanations.append({"tokens": tokens, "attributions": _floats(scores)})
        elif len(attributions) == 1:
            (array,) = attributions.values()
            explanations.append(_floats(array[row]))
        else:
            explanations.append(
                {
                    name[: -len(ATTRIBUTION_SUFFIX)]: _floats(array[row])
                    for name, array in attributions.items()
                }
            )
    return V1ExplainResponse(
        predictions=predictions(predicted), explanations=explanations, parameters=settings
    ).model_dump_json()


def _floats(array: np.ndarray[Any, Any]) -> Any:
    return np.asarray(array, dtype=np.float64).tolist()
