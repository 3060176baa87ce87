"""The console's playgrounds in the browser: each model kind gets its form, and what the page shows is what
the API answers for the same request.

Given the console stack's models (tests.support.console), a test opens `#/models/NAME/play`, uses the form
as a person would (typing, clicking, drawing with the mouse, uploading a file) and holds the page's result
to the API's own answer, fetched here over HTTP with the request the page says it sent.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image
from playwright.sync_api import expect
from sklearn.datasets import load_digits

from maas.registry import ManifestDraft
from maas.registry.admin import RegistryAdmin
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of
from tests.browser.conftest import PHONE
from tests.support.browser import fits_the_width, screenshot
from tests.support.console import DIGITS, EMBEDDER, LLM, SEED, SENTIMENT
from tests.support.models import BATCH, IR_VERSION, OPSET

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import ConsoleErrors, ConsoleStack

# The newest seed-mlp version: the playground's "latest" (v2, the one-epoch model, is published last).
SEED_LATEST = 2
# Enough deltas that three distinct observations of a growing reply hold however loaded the machine is
# (each delta is its own DOM change), few enough to finish in a blink on the tiny decoder.
CHAT_TOKENS = 64
# A reply far longer than the first delta, for the tests that act on the first one.
LONG_REPLY_TOKENS = 150
# The models below exist for one test each: shapes the console's own models do not have.
IMAGE_SHAPED_REGRESSOR = "cube-sum"
WIDE_MODEL = "wide-sum"
WIDE_FEATURES = 300
WIDE_MEAN = 0.25
TEXT_COLUMN_MODEL = "column-echo"
# On the first text of the assistant's reply, from inside the page (a MutationObserver callback runs before
# the page handles the next event), note what had arrived and click the button: no timing can race it.
CLICK_ON_FIRST_REPLY_TEXT = """(button) => new MutationObserver((_, observer) => {
    const reply = document.querySelector("[data-testid=message-assistant] .text");
    if (reply && reply.textContent) {
        observer.disconnect();
        window.arrivedAtClick = reply.textContent;
        document.body.dataset.clickedOnFirstText = button;
        document.querySelector(`[data-testid=${button}]`).click();
    }
}).observe(
    document.querySelector("[data-testid=chat-log]"),
    { childList: true, subtree: true, characterData: true },
)"""


def packaged(graph: onnx.GraphProto, task: str, **manifest: Any) -> tuple[dict[str, bytes], ManifestDraft]:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    content = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    return {MODEL_FILE: content}, ManifestDraft(task=task, signature=signature_of(session), **manifest)


def summing_model(
    shape: list[int | str], task: str, **manifest: Any
) -> tuple[dict[str, bytes], ManifestDraft]:
    """FP32 `input` of `shape` -> `total` [batch]: each row's sum, an answer to check by eye."""
    axes = list(range(1, len(shape)))
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["input", "axes"], ["total"], name="sum", keepdims=0)],
        "row_sum",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [BATCH])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)],
    )
    return packaged(graph, task, **manifest)


def text_column_model() -> tuple[dict[str, bytes], ManifestDraft]:
    """BYTES `text` [batch, 1] -> `echoed` [batch, 1]: a text model whose input has rank 2."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echoed"], name="echo")],
        "text_column",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [BATCH, 1])],
        [helper.make_tensor_value_info("echoed", TensorProto.STRING, [BATCH, 1])],
    )
    return packaged(graph, "text-echo")


@pytest.fixture(scope="module")
def odd_models(console: ConsoleStack) -> None:
    """Published into the module's stack once: an image-shaped regressor, a model too wide for a table
    whose only version is archived, and a text model served with a [-1, 1] input."""
    registry = console.stack.registry
    registry.publish(IMAGE_SHAPED_REGRESSOR, *summing_model([BATCH, 1, 8, 8], "regression"))
    wide = registry.publish(
        WIDE_MODEL,
        *summing_model(
            [BATCH, WIDE_FEATURES], "regression", input_means={"input": [WIDE_MEAN] * WIDE_FEATURES}
        ),
    )
    RegistryAdmin(registry).archive(WIDE_MODEL, wide.version, by="tests")
    registry.publish(TEXT_COLUMN_MODEL, *text_column_model())


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def infer(console: ConsoleStack, name: str, version: int, body: dict[str, Any]) -> dict[str, Any]:
    return post_json(f"{console.api}/v2/models/{name}/versions/{version}/infer", body)


def open_playground(page: Page, console: ConsoleStack, name: str, kind: str, query: str = "") -> None:
    page.goto(f"{console.url}#/models/{name}/play{query}")
    page.get_by_test_id(f"playground-{kind}").wait_for()


def cell_values(page: Page, selector: str) -> list[float]:
    values: list[str] = page.locator(selector).evaluate_all("(cells) => cells.map((c) => c.dataset.value)")
    return [float(value) for value in values]


def test_mlp_rows_are_inferred_and_the_table_is_what_v2_infer_answers(
    page: Page, console: ConsoleStack
) -> None:
    open_playground(page, console, SEED, "rows")
    page.get_by_test_id("cell").first.fill("1.5")
    page.get_by_test_id("add-row").click()
    page.get_by_test_id("cell").nth(12).fill("-2")

    page.get_by_test_id("infer").click()
    page.get_by_test_id("result-table").wait_for()

    sent = json.loads(page.get_by_test_id("request-json").text_content() or "")
    assert sent["inputs"][0]["shape"] == [2, 10]
    assert sent["inputs"][0]["data"][0] == 1.5 and sent["inputs"][0]["data"][12] == -2
    expected = infer(console, SEED, SEED_LATEST, sent)["outputs"][0]["data"]
    assert cell_values(page, "[data-testid=result-table] td[data-value]") == pytest.approx(expected, abs=1e-6)
    assert f"/v2/models/{SEED}/versions/{SEED_LATEST}/infer" in (
        page.get_by_test_id("curl").text_content() or ""
    )
    screenshot(page, "playground-rows")
    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    screenshot(page, "playground-rows-phone")


def test_a_request_edited_as_json_is_sent_and_its_refusal_shown_as_the_api_wrote_it(
    page: Page, console: ConsoleStack, console_errors: ConsoleErrors
) -> None:
    wrong = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    with pytest.raises(urllib.error.HTTPError) as refused:
        infer(console, SEED, SEED_LATEST, wrong)
    message = json.load(refused.value)["error"]
    open_playground(page, console, SEED, "rows")
    console_errors.expect(r"Failed to load resource: the server responded with a status of 400")

    page.get_by_text("Edit the request as JSON").click()
    page.get_by_label("V2 request body").fill(json.dumps(wrong))
    page.get_by_test_id("infer-json").click()

    expect(page.get_by_test_id("error")).to_have_text(f"400: {message}")
    assert json.dumps(wrong, separators=(",", ":")) in (page.get_by_test_id("curl").text_content() or "")


def a_digit_the_model_gets_right(console: ConsoleStack) -> tuple[np.ndarray, int]:
    """The first scikit-learn digit the published model classifies right, and confidently, via the API."""
    digits = load_digits()
    images, targets = digits.images[:40].astype(np.float32), digits.target[:40]
    answer = infer(
        console,
        DIGITS,
        1,
        {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [40, 1, 8, 8], "data": images.ravel().tolist()}
            ]
        },
    )
    logits = np.asarray(answer["outputs"][0]["data"]).reshape(40, 10)
    margins = np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2]
    for index in range(40):
        if logits[index].argmax() == targets[index] and margins[index] > 2:
            return images[index], int(targets[index])
    raise AssertionError("the tiny digits model gets none of the first 40 digits confidently right")


def test_an_uploaded_digit_is_classified_correctly_with_its_heatmap(
    page: Page, console: ConsoleStack
) -> None:
    image, label = a_digit_the_model_gets_right(console)
    png = io.BytesIO()
    Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L").save(png, format="PNG")
    open_playground(page, console, DIGITS, "image")

    page.get_by_test_id("upload").set_input_files(
        {"name": "digit.png", "mimeType": "image/png", "buffer": png.getvalue()}
    )
    page.get_by_test_id("upload-note").filter(has_text="digit.png").wait_for()
    page.get_by_test_id("classify").click()

    assert page.get_by_test_id("predicted-label").text_content() == str(label)
    page.get_by_test_id("heatmap").wait_for(state="visible")
    assert page.get_by_test_id("heatmap").get_attribute("data-cells") == "64"
    screenshot(page, "playground-image-upload")


def test_a_digit_drawn_with_the_mouse_gets_a_prediction_and_an_occlusion_heatmap(
    page: Page, console: ConsoleStack
) -> None:
    open_playground(page, console, DIGITS, "image")
    box = page.get_by_test_id("drawing").bounding_box()
    assert box is not None
    # A "7": a bar along the top, then a diagonal down to the bottom left.
    points = [(0.25, 0.2), (0.75, 0.2), (0.55, 0.5), (0.4, 0.85)]
    page.mouse.move(box["x"] + box["width"] * points[0][0], box["y"] + box["height"] * points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y, steps=8)
    page.mouse.up()
    page.get_by_test_id("classify").click()

    page.get_by_test_id("heatmap").wait_for(state="visible")
    assert page.get_by_test_id("predicted-label").text_content() in [str(digit) for digit in range(10)]
    assert float(page.get_by_test_id("heatmap").get_attribute("data-max-abs") or 0) > 0
    curls = page.get_by_test_id("curl").all_text_contents()
    assert any(f"/v2/models/{DIGITS}/versions/1/explain" in curl and '"occlusion"' in curl for curl in curls)
    screenshot(page, "playground-image")
    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    screenshot(page, "playground-image-phone")
    page.set_viewport_size({"width": 320, "height": 640})
    assert fits_the_width(page)


def test_a_text_is_classified_with_token_attributions(page: Page, console: ConsoleStack) -> None:
    open_playground(page, console, SENTIMENT, "text")
    page.get_by_test_id("text-input").fill("the cat sat on the mat")
    page.get_by_test_id("classify").click()

    page.get_by_test_id("token").first.wait_for()
    # The test model's weights: "cat" is +2 positive, "mat" +1 negative, every other token 0.
    assert page.get_by_test_id("predicted-label").text_content() == "positive"
    probability = 1 / (1 + math.exp(-1))
    shown = page.locator("[data-testid=probabilities] tr[data-label=positive]").get_attribute("data-value")
    assert float(shown or 0) == pytest.approx(probability, abs=1e-6)
    tokens = page.get_by_test_id("token")
    words = [
        text.split("\n")[0] for text in tokens.evaluate_all("(ts) => ts.map((t) => t.firstChild.textContent)")
    ]
    assert words == ["the", "cat", "sat", "on", "the", "mat"]
    assert cell_values(page, "[data-testid=token]") == pytest.approx([0, 2, 0, 0, 0, 0], abs=1e-6)
    screenshot(page, "playground-text")


def test_two_texts_get_the_cosine_of_their_embeddings(page: Page, console: ConsoleStack) -> None:
    open_playground(page, console, EMBEDDER, "embedding", "?version=production")
    assert page.get_by_role("heading", level=1).text_content() == f"{EMBEDDER} v1: embeddings playground"
    texts = ["the cat sat on the mat", "hello world"]
    page.get_by_test_id("text-a").fill(texts[0])
    page.get_by_test_id("text-b").fill(texts[1])
    page.get_by_test_id("compare").click()

    page.get_by_test_id("cosine").wait_for()
    answer = infer(
        console, EMBEDDER, 1, {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]}
    )
    a, b = np.asarray(answer["outputs"][0]["data"]).reshape(2, -1)
    expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert float(page.get_by_test_id("cosine").get_attribute("data-value") or "nan") == pytest.approx(
        expected, abs=1e-6
    )
    assert page.get_by_test_id("cosine").text_content() == f"{expected:.4f}"
    screenshot(page, "playground-embedding")


def test_a_chat_reply_streams_in_growing_and_ends_with_its_usage(page: Page, console: ConsoleStack) -> None:
    open_playground(page, console, LLM, "chat")
    page.get_by_test_id("max-tokens").fill(str(CHAT_TOKENS))
    page.get_by_test_id("seed").fill("7")
    page.get_by_test_id("chat-prompt").fill("Tell me a story.")
    # Snapshots of the reply each time the page changes it, recorded in the page as it happens.
    page.evaluate(
        """() => {
            window.replySnapshots = [];
            const log = document.querySelector("[data-testid=chat-log]");
            new MutationObserver(() => {
                const reply = log.querySelector("[data-testid=message-assistant] .text");
                if (reply && reply.closest(".streaming")) window.replySnapshots.push(reply.textContent);
            }).observe(log, { childList: true, subtree: true, characterData: true });
        }"""
    )

    page.get_by_test_id("send").click()
    page.get_by_test_id("usage").filter(has_text="completion").wait_for()

    snapshots: list[str] = page.evaluate("window.replySnapshots")
    final = page.get_by_test_id("message-assistant").locator(".text").text_content() or ""
    growing = [
        text for index, text in enumerate(snapshots) if text and (index == 0 or text != snapshots[index - 1])
    ]
    assert len(growing) >= 3, growing
    assert all(
        later.startswith(earlier) and len(later) > len(earlier)
        for earlier, later in itertools.pairwise(growing)
    )
    assert final.startswith(growing[-1])
    assert page.get_by_test_id("message-assistant").get_attribute("data-finish") == "length"
    usage = page.get_by_test_id("usage").text_content() or ""
    assert f"+ {CHAT_TOKENS} completion" in usage
    assert page.get_by_test_id("send").is_enabled() and page.get_by_test_id("stop").is_disabled()
    screenshot(page, "playground-chat")
    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    screenshot(page, "playground-chat-phone")


def test_stop_ends_a_stream_and_keeps_what_had_arrived(page: Page, console: ConsoleStack) -> None:
    open_playground(page, console, LLM, "chat")
    page.get_by_test_id("max-tokens").fill(str(LONG_REPLY_TOKENS))
    page.get_by_test_id("seed").fill("7")
    page.evaluate(CLICK_ON_FIRST_REPLY_TEXT, "stop")

    with page.expect_request(lambda request: request.url.endswith("/chat/completions")) as sent:
        page.get_by_test_id("send").click()

    page.locator("[data-testid=message-assistant][data-finish=stopped]").wait_for()
    kept = page.get_by_test_id("message-assistant").locator(".text").text_content() or ""
    arrived: str = page.evaluate("window.arrivedAtClick")
    # Nothing read after Stop reaches the page, and what was kept is the start of the seeded whole reply.
    assert kept and arrived.startswith(kept)
    body = {
        key: value for key, value in json.loads(sent.value.post_data or "").items() if key != "stream_options"
    }
    whole = post_json(f"{console.api}/openai/v1/chat/completions", {**body, "stream": False})
    full_text: str = whole["choices"][0]["message"]["content"]
    assert full_text.startswith(kept) and len(full_text) > len(kept)
    assert (page.get_by_test_id("usage").text_content() or "").startswith("Stopped")
    assert page.get_by_test_id("error").is_hidden()
    assert page.get_by_test_id("send").is_enabled() and page.get_by_test_id("stop").is_disabled()


def test_a_new_conversation_during_a_stream_keeps_nothing_of_the_turn_it_dropped(
    page: Page, console: ConsoleStack
) -> None:
    open_playground(page, console, LLM, "chat")
    page.get_by_test_id("max-tokens").fill(str(LONG_REPLY_TOKENS))
    page.get_by_test_id("seed").fill("7")
    page.get_by_test_id("chat-prompt").fill("Tell me a story.")
    page.evaluate(CLICK_ON_FIRST_REPLY_TEXT, "reset")
    page.get_by_test_id("send").click()
    # A selector, not wait_for_function: Playwright polls a function with eval, which the page's CSP refuses.
    page.locator("body[data-clicked-on-first-text]").wait_for(state="attached")

    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.get_by_test_id("chat-log")).to_be_empty()
    assert page.get_by_test_id("usage").text_content() == ""

    page.get_by_test_id("chat-prompt").fill("Start again.")
    page.get_by_test_id("max-tokens").fill("8")
    with page.expect_request(lambda request: request.url.endswith("/chat/completions")) as sent:
        page.get_by_test_id("send").click()
    page.get_by_test_id("usage").filter(has_text="completion").wait_for()

    assert json.loads(sent.value.post_data or "")["messages"] == [{"role": "user", "content": "Start again."}]
    assert page.get_by_test_id("message-user").locator(".text").all_text_contents() == ["Start again."]
    expect(page.get_by_test_id("message-assistant")).to_have_count(1)
    assert "+ 8 completion" in (page.get_by_test_id("usage").text_content() or "")


def test_an_image_shaped_input_of_a_model_that_is_not_a_classifier_is_edited_as_json(
    page: Page, console: ConsoleStack, odd_models: None
) -> None:
    open_playground(page, console, IMAGE_SHAPED_REGRESSOR, "rows")
    expect(page.get_by_test_id("json-note")).to_contain_text("input is shaped [-1, 1, 8, 8]")
    editor = page.get_by_label("V2 request body")
    prefilled = json.loads(editor.input_value())
    assert prefilled["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert prefilled["inputs"][0]["data"] == [0] * 64

    ones = {"inputs": [{**prefilled["inputs"][0], "data": [1] * 64}]}
    editor.fill(json.dumps(ones))
    page.get_by_test_id("infer-json").click()

    page.get_by_test_id("result-table").wait_for()
    assert cell_values(page, "[data-testid=result-table] td[data-value]") == [64]
    assert infer(console, IMAGE_SHAPED_REGRESSOR, 1, ones)["outputs"][0]["data"] == [64]


def test_a_row_too_wide_for_a_table_is_edited_as_json_and_an_all_archived_model_still_opens(
    page: Page, console: ConsoleStack, odd_models: None
) -> None:
    open_playground(page, console, WIDE_MODEL, "rows")
    expect(page.get_by_test_id("archived-note")).to_contain_text("Every version of wide-sum is archived")
    expect(page.get_by_test_id("json-note")).to_contain_text(
        f"input has {WIDE_FEATURES} features per row, more than the 256 a table shows"
    )
    expect(page.get_by_test_id("rows-table")).to_have_count(0)
    editor = page.get_by_label("V2 request body")
    assert json.loads(editor.input_value())["inputs"][0]["data"] == [WIDE_MEAN] * WIDE_FEATURES

    page.get_by_test_id("infer-json").click()

    page.get_by_test_id("result-table").wait_for()
    assert cell_values(page, "[data-testid=result-table] td[data-value]") == [WIDE_MEAN * WIDE_FEATURES]
    screenshot(page, "playground-rows-json")


def test_a_text_is_sent_in_the_rank_the_model_is_served_with(
    page: Page, console: ConsoleStack, odd_models: None
) -> None:
    open_playground(page, console, TEXT_COLUMN_MODEL, "text")
    page.get_by_test_id("text-input").fill("hello there")

    with page.expect_request(lambda request: request.url.endswith("/infer")) as sent:
        page.get_by_test_id("classify").click()

    expect(page.get_by_test_id("prediction")).to_have_text("echoed: hello there")
    assert json.loads(sent.value.post_data or "")["inputs"][0]["shape"] == [1, 1]
    assert page.get_by_test_id("error").is_hidden()


def test_the_drawing_area_is_usable_from_the_keyboard(page: Page, console: ConsoleStack) -> None:
    open_playground(page, console, DIGITS, "image")
    page.get_by_test_id("drawing").focus()
    # The cursor starts in the middle cell (row 4, column 4 of 0..7); up one, then ink it.
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Space")
    page.get_by_test_id("classify").focus()
    page.keyboard.press("Enter")

    page.get_by_test_id("heatmap").wait_for(state="visible")
    curl = page.get_by_test_id("curl").first.text_content() or ""
    sent = json.loads(curl.split(" -d '", 1)[1].split("' ", 1)[0])
    pixels = sent["inputs"][0]["data"]
    assert pixels[3 * 8 + 4] == 16
    assert sum(pixels) == 16
