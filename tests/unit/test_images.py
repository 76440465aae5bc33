"""The pure Images translation: request checks, both upstream bodies, answers from either path."""

import base64
import json

import pytest

from cliproxy.addons.translate import errors, images
from cliproxy.addons.translate.stream import collect
from tests.fakes import images as fake
from tests.fakes.codex_backend import turn

PNG = fake.tiny_png()
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    "body, edit, param, code",
    [
        ([], False, None, None),
        ({}, False, "prompt", "missing_required_parameter"),
        ({"prompt": "  "}, False, "prompt", "missing_required_parameter"),
        ({"prompt": "p", "n": 3}, False, "n", "invalid_value"),
        ({"prompt": "p", "size": "512x512"}, False, "size", "invalid_value"),
        ({"prompt": "p", "quality": "ultra"}, False, "quality", "invalid_value"),
        ({"prompt": "p", "background": "pink"}, False, "background", "invalid_value"),
        ({"prompt": "p", "output_format": "gif"}, False, "output_format", "invalid_value"),
        ({"prompt": "p", "response_format": "url"}, False, "response_format", None),
        ({"prompt": "p", "stream": True}, False, "stream", "unsupported_parameter"),
        ({"prompt": "p"}, True, "image", "missing_required_parameter"),
        ({"prompt": "p", "image": "https://example.com/a.png"}, True, "image[0]", "invalid_image"),
        ({"prompt": "p", "image": base64.b64encode(b"GIF89a").decode()}, True, "image[0]", "invalid_image"),
    ],
)
def test_refused_requests(body, edit, param, code):
    with pytest.raises(errors.ProxyError) as got:
        images.parse(body, edit)
    assert got.value.status == 400 and got.value.param == param and got.value.code == code


@pytest.mark.parametrize(
    "body, edit, native",
    [
        ({"prompt": "p"}, False, {"prompt": "p", "model": "gpt-image-1.5"}),
        (
            {"prompt": "p", "model": "dall-e-3", "quality": "hd", "n": 1},
            False,
            {"prompt": "p", "model": "gpt-image-1.5", "quality": "high"},
        ),
        ({"prompt": "p", "model": "gpt-image-2", "size": "1536x1024"}, False, {"prompt": "p", "model": "gpt-image-2", "size": "1536x1024"}),
        ({"prompt": "p", "image": PNG_URL}, True, {"prompt": "p", "model": "gpt-image-1.5", "images": [{"image_url": PNG_URL}]}),
        (
            {"prompt": "p", "images": [{"image_url": PNG_URL}]},
            True,
            {"prompt": "p", "model": "gpt-image-1.5", "images": [{"image_url": PNG_URL}]},
        ),
        (
            {"prompt": "p", "image": [base64.b64encode(PNG).decode()], "mask": PNG_URL},
            True,
            {"prompt": "p", "model": "gpt-image-1.5", "images": [{"image_url": PNG_URL}], "mask": {"image_url": PNG_URL}},
        ),
    ],
)
def test_native_bodies(body, edit, native):
    assert images.native_body(images.parse(body, edit)) == native


def test_responses_form_forces_the_tool():
    call = images.responses_call(images.parse({"prompt": "p", "image": PNG_URL, "size": "1024x1024"}, edit=True))
    body = call.body
    assert body["tool_choice"] == {"type": "image_generation"} and body["stream"] is True and body["store"] is False
    assert body["tools"] == [{"type": "image_generation", "output_format": "png", "size": "1024x1024"}]
    assert body["input"][0]["content"] == [{"type": "input_text", "text": "p"}, {"type": "input_image", "image_url": PNG_URL}]
    assert call.stream is False and call.model == images.DRIVER_MODEL


def test_multipart_fields():
    boundary = "xyz"
    parts = [
        b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nmake it blue\r\n',
        b'--xyz\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n',
        b'--xyz\r\nContent-Disposition: form-data; name="image[]"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + PNG + b"\r\n",
        b'--xyz\r\nContent-Disposition: form-data; name="image[]"; filename="b.png"\r\nContent-Type: image/png\r\n\r\n' + PNG + b"\r\n",
        b"--xyz--\r\n",
    ]
    got = images.parse_multipart(b"".join(parts), f"multipart/form-data; boundary={boundary}")
    assert got == {"prompt": "make it blue", "n": 1, "image": [PNG_URL, PNG_URL]}
    assert len(images.parse(got, edit=True).images) == 2


def test_answer_from_the_stream_and_its_refusals():
    b64 = base64.b64encode(PNG).decode()
    c = collect(_wire(turn().image(b64).text("ok").events()))
    out = images.answer_from_stream(c, {})
    assert out["data"] == [{"b64_json": b64, "revised_prompt": "A red square."}] and out["usage"] == fake.IMAGE_USAGE
    for events, status, code in (
        (turn().image(None).events(), 400, "moderation_blocked"),
        (turn().text("no tool here").events(), 403, "image_generation_unavailable"),
    ):
        with pytest.raises(errors.ProxyError) as got:
            images.answer_from_stream(collect(_wire(events)), {})
        assert (got.value.status, got.value.code) == (status, code)


def test_answer_from_native_needs_an_image():
    with pytest.raises(errors.ProxyError) as got:
        images.answer_from_native({"data": []}, images.parse({"prompt": "p"}, False))
    assert got.value.status == 502
    out = images.answer_from_native(
        {"created": 5, "data": [{"b64_json": "QQ==", "url": "x"}], "usage": {"a": 1}}, images.parse({"prompt": "p"}, False)
    )
    assert out == {"created": 5, "data": [{"b64_json": "QQ=="}], "usage": {"a": 1}}


@pytest.mark.parametrize(
    "item, markdown",
    [
        ({"type": "image_generation_call", "result": "QQ==", "output_format": "webp"}, "![generated image](data:image/webp;base64,QQ==)"),
        ({"type": "image_generation_call", "result": "QQ=="}, "![generated image](data:image/png;base64,QQ==)"),
        ({"type": "image_generation_call", "status": "failed", "result": None}, images.NOT_GENERATED),
    ],
)
def test_chat_markdown(item, markdown):
    assert images.markdown_image(item).strip() == markdown


def _wire(events) -> bytes:
    return b"".join(f"event: {k}\ndata: {json.dumps(v)}\n\n".encode() for k, v in events)
