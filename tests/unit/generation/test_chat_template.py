"""Chat templates rendered as transformers renders them, and refused, as a 400 naming `messages`, when they
fail on the messages or reach for Python's internals."""

from __future__ import annotations

import pytest

from maas.errors import IntegrityError, InvalidInput
from maas.generation import TextGenerator
from maas.generation.chat_template import ChatTemplate

# SmolLM2-135M-Instruct's template, as its chat_template.jinja ships it.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def template(source: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>", what="chat_template.jinja of model 'm' v1")


def test_the_smollm2_template_renders_its_chatml_with_the_default_system_prompt() -> None:
    rendered = template(SMOLLM2).render(FRANCE)

    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_without_the_generation_prompt_the_assistant_turn_is_not_opened() -> None:
    assert not template(SMOLLM2).render(FRANCE, add_generation_prompt=False).endswith("assistant\n")


def test_blocks_are_trimmed_and_stripped_as_transformers_does() -> None:
    # The newline after each block tag goes, and so does the indentation before one.
    source = (
        "{% for m in messages %}\n    {% if m.role %}\n{{ m.role }}:{{ m.content }}\n    {% endif %}\n"
        "{% endfor %}"
    )

    assert (
        template(source).render([{"role": "a", "content": "1"}, {"role": "b", "content": "2"}])
        == "a:1\nb:2\n"
    )


def test_special_tokens_loop_controls_tojson_and_the_generation_tag_are_available() -> None:
    source = (
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'skip' %}{% continue %}{% endif %}"
        "{% generation %}{{ m | tojson }}{% endgeneration %}{% endfor %}{{ eos_token }}"
    )

    rendered = template(source).render(
        [{"role": "skip", "content": "x"}, {"role": "user", "content": "é <b>"}]
    )

    assert rendered == '<s>{"role": "user", "content": "é <b>"}</s>'


def test_a_templates_raise_exception_is_a_400_naming_messages_with_its_reason() -> None:
    source = (
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversations must start with a user') }}{% endif %}"
    )

    with pytest.raises(InvalidInput, match=r"^messages: .*Conversations must start with a user"):
        template(source).render([{"role": "assistant", "content": "hi"}])


def test_messages_the_template_cannot_handle_are_a_400_naming_messages() -> None:
    with pytest.raises(InvalidInput, match=r"^messages: .*TypeError"):
        template(SMOLLM2).render([{"role": "user", "content": ["a list", "of parts"]}])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__ }}",
        "{{ messages | attr('__class__') }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ raise_exception.__globals__ }}",
        "{% set ns = namespace(_hidden=1) %}",
        "{% set ns = namespace() %}{% set ns._hidden = 1 %}",
    ],
)
def test_the_sandbox_refuses_python_internals_as_a_400(source: str) -> None:
    with pytest.raises(InvalidInput, match=r"^messages: .*(unsafe|underscore)"):
        template(source).render(FRANCE)


def test_the_template_cannot_change_the_messages_it_is_given() -> None:
    messages = [{"role": "user", "content": "hi"}]

    with pytest.raises(InvalidInput, match=r"^messages: .*unsafe"):
        template("{% set _ = messages.append({'role': 'system'}) %}").render(messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_a_template_that_does_not_compile_is_the_models_fault_not_the_clients() -> None:
    with pytest.raises(
        IntegrityError, match=r"chat_template\.jinja of model 'm' v1: expected a Jinja chat template"
    ):
        template("{% for %}")


def test_the_generator_renders_with_its_models_template(tiny_generator: TextGenerator) -> None:
    rendered = tiny_generator.render_chat([{"role": "user", "content": "hi"}])

    # The tiny decoder carries SmolLM2's own template, which adds its default system turn.
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tiny_generator.encode(rendered)[0] == tiny_generator.generation.bos_token_id


def test_a_generator_without_a_template_refuses_messages(tiny_generator: TextGenerator) -> None:
    bare = TextGenerator(tiny_generator.manifest, tiny_generator.decoder, tiny_generator.tokenizer, None)

    with pytest.raises(InvalidInput, match=r"^messages: .*no chat template"):
        bare.render_chat(FRANCE)
