"""Explain one request on a loaded model: predictions, plus an attribution for every input element.

The entry point the service calls. It runs the request once for its predictions, resolves the output and
targets explained, and hands numeric inputs to `tensors` and a text model's tokens to `text`; both run
their perturbations through `batching`. The attributions come back beside the predictions, as tensors
named after the inputs they explain.
"""

from __future__ import annotations

from typing import Any

from maas.datatypes import BY_NUMPY
from maas.errors import InvalidInput
from maas.explain.batching import Evaluations, ExplainLimits
from maas.explain.parameters import ATTRIBUTION_SUFFIX, EXPLANATION, TOKENS_SUFFIX, ExplainParameters
from maas.explain.targets import explained_output, row_count, target_indices
from maas.explain.tensors import explain_tensors
from maas.explain.text import explain_text
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.runtime import Deadline, LoadedModel, check_inputs, check_requested_outputs


def explain_loaded(
    model: LoadedModel,
    request: InferenceRequest,
    parameters: ExplainParameters,
    limits: ExplainLimits,
    *,
    deadline: Deadline | None = None,
) -> InferenceResponse:
    """The request's predictions, with the attributions of `parameters.target` of the explained output."""
    signature = model.signature
    check_inputs(model.name, signature, request.inputs)
    requested = check_requested_outputs(model.name, signature, request.outputs)
    explained = explained_output(model, parameters.output)
    datatypes = {spec.name: spec.datatype for spec in signature.outputs}
    _check_names_are_free(model, datatypes)
    inputs = {tensor.name: tensor.array for tensor in request.inputs}
    names = list(dict.fromkeys([*requested, explained.name]))
    # A text model is tokenized once: its predictions and its perturbations start from the same ids.
    tokenized = (
        None if model.tokenizer is None else model.tokenize_with_tokens(inputs[model.tokenizer.input_name])
    )
    if tokenized is None:
        predictions = model.run(inputs, names, deadline=deadline)
    else:
        predictions = model.run_token_ids(tokenized.feeds, names, deadline=deadline)
    arrays = dict(zip(names, predictions, strict=True))
    predicted = arrays[explained.name]
    rows = row_count(request.inputs[0].array, predicted, explained.name)
    targets = target_indices(parameters.target, predicted.reshape(rows, -1), model.manifest, explained.name)
    evaluations = Evaluations(model, explained.name, targets, limits, deadline)
    attributions: list[Tensor]
    settings: dict[str, Any]
    if tokenized is None:
        by_input, settings = explain_tensors(evaluations, inputs, parameters)
        attributions = [
            Tensor(name + ATTRIBUTION_SUFFIX, BY_NUMPY[values.dtype].v2, values)
            for name, values in by_input.items()
        ]
    else:
        text = explain_text(evaluations, tokenized, parameters)
        attributions = [
            Tensor(text.input + TOKENS_SUFFIX, "BYTES", text.tokens),
            Tensor(text.input + ATTRIBUTION_SUFFIX, "FP32", text.attributions),
        ]
        settings = text.settings
    return InferenceResponse(
        model_name=model.name,
        model_version=model.version,
        outputs=[Tensor(name, datatypes[name], arrays[name]) for name in requested] + attributions,
        id=request.id,
        parameters={
            EXPLANATION: {
                "output": explained.name,
                "target": targets.tolist(),
                **settings,
                "attributions": [tensor.name for tensor in attributions],
            }
        },
    )


def _check_names_are_free(model: LoadedModel, outputs: dict[str, str]) -> None:
    """Attribution tensors sit beside the model's outputs, so none may share an output's name."""
    if model.tokenizer is not None:
        text = model.tokenizer.input_name
        added = [text + TOKENS_SUFFIX, text + ATTRIBUTION_SUFFIX]
    else:
        added = [spec.name + ATTRIBUTION_SUFFIX for spec in model.signature.inputs]
    clashes = [name for name in added if name in outputs]
    if clashes:
        raise InvalidInput(
            f"model '{model.name}': its outputs {clashes} have the names explanations use; "
            "explanations cannot be served for it"
        )
