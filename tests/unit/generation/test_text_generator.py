"""The generation loop over the tiny decoder: greedy decoding equals the raw onnxruntime loop token for
token in both cache modes, seeds reproduce, and every way a generation ends (eos, stop string, max_tokens,
deadline) ends it as OpenAI's finish_reason says."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from maas.errors import InvalidInput
from maas.generation import Finished, SamplingParams, TextDelta, TextGenerator
from maas.generation.decoder import DecoderSession
from maas.generation.reference import greedy_reference

# A prompt from the tiny tokenizer's own training text, so it is made of real merges.
PROMPT = "<|im_start|>user\nThe capital of France is<|im_end|>\n<|im_start|>assistant\n"
SEED = 1234


@dataclass
class Generated:
    deltas: list[TextDelta] = field(default_factory=list)
    finished: Finished | None = None

    @property
    def text(self) -> str:
        return "".join(delta.text for delta in self.deltas)

    @property
    def token_ids(self) -> list[int]:
        return [token for delta in self.deltas for token in delta.token_ids]


def generate(
    generator: TextGenerator, params: SamplingParams, prompt: str = PROMPT, deadline: float | None = None
) -> Generated:
    result = Generated()
    for event in generator.generate(generator.encode(prompt), params, deadline):
        assert result.finished is None, "an event came after Finished"
        if isinstance(event, TextDelta):
            result.deltas.append(event)
        else:
            result.finished = event
    assert result.finished is not None
    return result


def sampled(generator: TextGenerator, max_tokens: int = 48, **params: object) -> Generated:
    return generate(generator, SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=SEED, **params))  # type: ignore[arg-type]


# ---- greedy against the raw loop, cache modes


@pytest.mark.parametrize("shared_buffer", [False, True], ids=["raw-copy", "raw-shared"])
def test_greedy_equals_the_raw_onnxruntime_loop_token_for_token(
    tiny_generator: TextGenerator, tiny_folder: Path, shared_buffer: bool
) -> None:
    prompt_ids = tiny_generator.encode(PROMPT)

    served = generate(tiny_generator, SamplingParams(max_tokens=40, temperature=0))
    raw = greedy_reference(
        tiny_folder,
        prompt_ids,
        40,
        generation=tiny_generator.generation,
        eos_token_ids=tiny_generator.generation.eos_token_ids,
        shared_buffer=shared_buffer,
    )

    assert served.token_ids == raw.tokens
    assert served.text == tiny_generator.decode(raw.tokens)


def test_the_shared_buffer_and_the_copied_cache_give_the_same_tokens(
    tiny_generator: TextGenerator, tiny_copying_generator: TextGenerator
) -> None:
    assert tiny_generator.generation.kv_shared_buffer
    assert not tiny_copying_generator.generation.kv_shared_buffer
    for params in (SamplingParams(max_tokens=40, temperature=0), SamplingParams(max_tokens=40, seed=SEED)):
        assert (
            generate(tiny_generator, params).token_ids == generate(tiny_copying_generator, params).token_ids
        )


def test_a_prompt_prefilled_in_chunks_continues_as_one_prefilled_at_once(
    tiny_generator: TextGenerator,
) -> None:
    chunked = TextGenerator(
        tiny_generator.manifest,
        DecoderSession(
            tiny_generator.decoder.session, tiny_generator.generation, what="tiny", prefill_chunk_tokens=4
        ),
        tiny_generator.tokenizer,
        tiny_generator.chat_template,
    )
    params = SamplingParams(max_tokens=24, temperature=0)

    assert len(tiny_generator.encode(PROMPT)) > 3 * 4
    assert generate(chunked, params).token_ids == generate(tiny_generator, params).token_ids


def test_a_deadline_passing_between_prefill_chunks_stops_the_prefill(tiny_generator: TextGenerator) -> None:
    decoder = DecoderSession(
        tiny_generator.decoder.session, tiny_generator.generation, what="tiny", prefill_chunk_tokens=4
    )
    prompt = tiny_generator.encode(PROMPT)

    assert decoder.start(len(prompt)).prefill(prompt, deadline=time.monotonic()) is None
    assert decoder.start(len(prompt)).prefill(prompt, deadline=None) is not None


# ---- sampling


def test_the_same_seed_gives_the_same_text_and_another_seed_another(tiny_generator: TextGenerator) -> None:
    first = sampled(tiny_generator)
    again = sampled(tiny_generator)
    other = generate(tiny_generator, SamplingParams(max_tokens=48, seed=SEED + 1))

    assert again.token_ids == first.token_ids
    assert again.text == first.text
    assert other.token_ids != first.token_ids


def test_no_seed_draws_fresh_entropy_each_time(tiny_generator: TextGenerator) -> None:
    runs = {tuple(generate(tiny_generator, SamplingParams(max_tokens=32)).token_ids) for _ in range(3)}

    assert len(runs) > 1


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=32, temperature=1.5, top_k=1, seed=SEED),
        SamplingParams(max_tokens=32, temperature=1.5, top_p=1e-9, seed=SEED),
    ],
    ids=["top_k=1", "top_p=1e-9"],
)
def test_a_cut_to_one_token_decodes_greedily(tiny_generator: TextGenerator, params: SamplingParams) -> None:
    greedy = generate(tiny_generator, SamplingParams(max_tokens=32, temperature=0))

    assert generate(tiny_generator, params).token_ids == greedy.token_ids


def test_logprobs_report_each_token_with_its_alternatives(tiny_generator: TextGenerator) -> None:
    result = generate(tiny_generator, SamplingParams(max_tokens=8, temperature=0, logprobs=3))

    logprobs = [entry for delta in result.deltas for entry in delta.logprobs]
    assert len(logprobs) == len(result.token_ids) == 8
    for token_id, entry in zip(result.token_ids, logprobs, strict=True):
        assert len(entry.top) == 3
        # Greedy took the most likely token: it heads its own alternatives.
        assert entry.top[0] == (entry.token, entry.logprob)
        assert entry.logprob <= 0
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        assert entry.token == tiny_generator.token_texts.text_of(token_id)


def test_without_logprobs_the_deltas_carry_none(tiny_generator: TextGenerator) -> None:
    assert all(delta.logprobs == () for delta in sampled(tiny_generator).deltas)


# ---- how generation ends


def test_max_tokens_ends_with_length_and_counts_every_token(tiny_generator: TextGenerator) -> None:
    result = generate(tiny_generator, SamplingParams(max_tokens=5, temperature=0))

    assert result.finished == Finished("length", len(tiny_generator.encode(PROMPT)), 5, False)
    assert len(result.token_ids) == 5


def test_an_eos_token_ends_with_stop_and_adds_no_text(tiny_generator: TextGenerator) -> None:
    greedy = generate(tiny_generator, SamplingParams(max_tokens=40, seed=SEED))
    # Make the fourth distinct token sampled an end-of-sequence id, and generate again with the same seed.
    ids = greedy.token_ids
    eos = next(token for index, token in enumerate(ids) if index >= 3 and token not in ids[:index])
    ends = ids.index(eos) + 1
    generation = tiny_generator.generation.model_copy(update={"eos_token_ids": [eos]})
    stopping = TextGenerator(
        tiny_generator.manifest,
        DecoderSession(tiny_generator.decoder.session, generation, what="tiny"),
        tiny_generator.tokenizer,
        tiny_generator.chat_template,
    )

    result = generate(stopping, SamplingParams(max_tokens=40, seed=SEED))

    assert result.finished is not None
    assert (result.finished.finish_reason, result.finished.completion_tokens) == ("stop", ends)
    assert result.token_ids == ids[:ends]
    assert result.text == tiny_generator.decode(ids[: ends - 1])


def test_a_stop_string_across_tokens_ends_before_it_and_none_of_it_is_emitted(
    tiny_generator: TextGenerator,
) -> None:
    params, free, stop, ends = straddling_stop(tiny_generator)

    result = generate(tiny_generator, replace(params, stop=(stop,)))

    assert result.finished is not None
    assert result.finished.finish_reason == "stop"
    assert result.text == free.text[: free.text.index(stop)]
    assert result.token_ids == free.token_ids[:ends]


def straddling_stop(generator: TextGenerator) -> tuple[SamplingParams, Generated, str, int]:
    """Sampling params, their completion, a stop string whose first occurrence in it spans two tokens (the
    last character of one token's text and the first of the next's), and the count of tokens up to it.

    Random weights write mostly stray bytes and unused ids, so seeds are tried until one fits."""
    for seed in range(SEED, SEED + 20):
        params = SamplingParams(max_tokens=64, top_k=40, seed=seed)
        free = generate(generator, params)
        ids = free.token_ids
        texts = [generator.decode([token]) for token in ids]
        for second in range(1, len(ids)):
            if not (_whole(texts[second - 1]) and _whole(texts[second])):
                continue
            stop = texts[second - 1][-1] + texts[second][0]
            if stop not in generator.decode(ids[:second]) and stop not in texts[second]:
                return params, free, stop, second + 1
    pytest.fail("no seed's completion has two neighbouring tokens of whole characters")


def _whole(text: str) -> bool:
    """Text of whole characters: no part of a multi-byte character shown as U+FFFD."""
    return bool(text) and "\ufffd" not in text


def test_a_stop_string_the_completion_starts_with_gives_no_text(tiny_generator: TextGenerator) -> None:
    free = sampled(tiny_generator)

    result = sampled(tiny_generator, stop=(free.text[:3],))

    assert result.text == ""
    assert result.finished is not None and result.finished.finish_reason == "stop"


def test_the_earliest_of_several_stop_strings_wins(tiny_generator: TextGenerator) -> None:
    free = sampled(tiny_generator)
    early, late = free.text[5:8], free.text[20:24]
    assert early not in free.text[:5]

    result = sampled(tiny_generator, stop=(late, early))

    assert result.text == free.text[: free.text.index(early)]


def test_a_stop_string_that_never_occurs_changes_nothing(tiny_generator: TextGenerator) -> None:
    free = sampled(tiny_generator)

    result = sampled(tiny_generator, stop=(free.text[:6] + "\u2603",))

    assert (result.text, result.token_ids, result.finished) == (free.text, free.token_ids, free.finished)


def test_a_deadline_already_passed_ends_with_length_and_the_flag_after_at_most_one_token(
    tiny_generator: TextGenerator,
) -> None:
    result = generate(tiny_generator, SamplingParams(max_tokens=40, temperature=0), deadline=time.monotonic())

    assert result.finished is not None
    assert result.finished.finish_reason == "length"
    assert result.finished.time_budget_exhausted
    assert result.finished.completion_tokens <= 1


def test_deltas_account_for_every_generated_token(tiny_generator: TextGenerator) -> None:
    result = sampled(tiny_generator, max_tokens=30)

    assert result.finished is not None
    assert len(result.token_ids) == result.finished.completion_tokens == 30
    assert result.text == tiny_generator.decode(result.token_ids)
    assert all(delta.text or delta.token_ids for delta in result.deltas)


# ---- what is refused before generating


@pytest.mark.parametrize(
    ("prompt_ids", "field"),
    [([], "prompt"), ([5, 10_000], "prompt"), ([5, -1], "prompt"), ([5] * 250, "max_tokens")],
    ids=["empty", "beyond-vocabulary", "negative", "over-the-context"],
)
def test_a_prompt_the_model_cannot_take_is_refused_naming_the_field(
    tiny_generator: TextGenerator, prompt_ids: list[int], field: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^{field}:"):
        tiny_generator.generate(prompt_ids, SamplingParams(max_tokens=10))
