"""Images through the subscription, through the real proxy: `/v1/images/generations` and `/v1/images/edits`
(native endpoints, and the `/responses` form where they answer 404), the image tool on `/v1/responses`,
and the clear errors of what the backend refuses."""

import base64
import io as bytes_io

import httpx
import openai
import pytest
from mitmproxy import io

from tests.conftest import CLIENT_KEY, mint_account
from tests.fakes import images as fake
from tests.fakes.accounts import ACCOUNT_ID
from tests.fakes.codex_backend import PATH, usage_limit
from tests.proxyproc import start_proxy

BASE = PATH.removesuffix("/responses")


def png_file(name: str = "in.png") -> tuple[str, bytes_io.BytesIO, str]:
    return (name, bytes_io.BytesIO(fake.tiny_png((0, 255, 0))), "image/png")


@pytest.fixture(params=["native", "responses"])
def upstream_path(request, backend):
    backend.images.native = request.param == "native"
    return request.param


def test_generate_returns_the_png(openai_client, backend, upstream_path):
    r = openai_client.images.generate(model="gpt-image-1.5", prompt="a red square", size="1024x1024", quality="low")
    assert len(r.data) == 1 and base64.b64decode(r.data[0].b64_json) == fake.GENERATED
    assert r.data[0].revised_prompt == "A red square." and isinstance(r.created, int)
    assert r.usage is not None and r.usage.input_tokens_details.image_tokens == 40
    paths = [q.path for q in backend.received]
    if upstream_path == "native":
        assert paths == [BASE + "/images/generations"]
        body = backend.received[0].json
        assert body == {"prompt": "a red square", "model": "gpt-image-1.5", "size": "1024x1024", "quality": "low"}
        assert backend.received[0].headers["chatgpt-account-id"] == ACCOUNT_ID
    else:
        assert paths == [BASE + "/images/generations", PATH]  # the native try, then the tool forced
        body = backend.received[1].json
        assert body["tool_choice"] == {"type": "image_generation"}
        assert body["tools"] == [{"type": "image_generation", "output_format": "png", "size": "1024x1024", "quality": "low"}]
        assert body["input"][0]["content"] == [{"type": "input_text", "text": "a red square"}]


def test_edit_with_a_file_returns_the_edited_png(openai_client, backend, upstream_path):
    r = openai_client.images.edit(image=png_file(), prompt="make it blue", size="1024x1024")
    assert base64.b64decode(r.data[0].b64_json) == fake.EDITED
    sent = fake.tiny_png((0, 255, 0))
    url = "data:image/png;base64," + base64.b64encode(sent).decode()
    if upstream_path == "native":
        assert backend.received[-1].path == BASE + "/images/edits"
        assert backend.received[-1].json["images"] == [{"image_url": url}]
    else:
        parts = backend.received[-1].json["input"][0]["content"]
        assert parts == [{"type": "input_text", "text": "make it blue"}, {"type": "input_image", "image_url": url}]


def test_edit_with_several_files_and_json(proxy, backend):
    """Two files as `image[]` (the SDK's list form); and the JSON form with data URLs."""
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    r = client.images.edit(image=[png_file("a.png"), png_file("b.png")], prompt="merge them")
    assert base64.b64decode(r.data[0].b64_json) == fake.EDITED
    assert len(backend.received[-1].json["images"]) == 2
    url = "data:image/png;base64," + base64.b64encode(fake.tiny_png()).decode()
    got = httpx.post(proxy.base_url + "/v1/images/edits", json={"prompt": "p", "images": [{"image_url": url}]}, timeout=30)
    assert got.status_code == 200 and base64.b64decode(got.json()["data"][0]["b64_json"]) == fake.EDITED


def test_image_tool_passes_through_responses(openai_client, backend):
    r = openai_client.responses.create(
        model="gpt-5.5", input="draw a red square", tools=[{"type": "image_generation", "size": "1024x1024"}]
    )
    calls = [i for i in r.output if i.type == "image_generation_call"]
    assert len(calls) == 1 and base64.b64decode(calls[0].result) == fake.GENERATED
    assert backend.received[-1].json["tools"] == [{"type": "image_generation", "size": "1024x1024"}]


def test_image_tool_events_stream_through(openai_client, backend):
    with openai_client.responses.stream(model="gpt-5.5", input="draw", tools=[{"type": "image_generation", "partial_images": 1}]) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_response()
    for kind in ("in_progress", "generating", "partial_image", "completed"):
        assert f"response.image_generation_call.{kind}" in kinds
    calls = [i for i in final.output if i.type == "image_generation_call"]
    assert base64.b64decode(calls[0].result) == fake.GENERATED


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and {"message", "type", "code", "param"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    "kwargs, param",
    [({"size": "512x512"}, "size"), ({"quality": "ultra"}, "quality"), ({"n": 2}, "n"), ({"response_format": "url"}, "response_format")],
)
def test_bad_options_are_clear_400s(openai_client, backend, kwargs, param):
    with pytest.raises(openai.BadRequestError) as got:
        openai_client.images.generate(prompt="a square", **kwargs)
    assert error_of(got.value)["param"] == param
    assert backend.received == []  # refused before any upstream call


def test_options_the_upstream_rejects(openai_client, backend, upstream_path):
    with pytest.raises(openai.BadRequestError) as got:
        openai_client.images.generate(prompt="a square", background="transparent", output_format="jpeg")
    err = error_of(got.value)
    assert "Transparent background" in err["message"] and err["param"] == "background"


def test_refused_prompt(openai_client, backend, upstream_path):
    with pytest.raises(openai.BadRequestError) as got:
        openai_client.images.generate(prompt="something forbidden")
    err = error_of(got.value)
    assert err["code"] == "moderation_blocked" and "safety system" in err["message"]


def test_plan_without_images(openai_client, backend, upstream_path):
    backend.catalog.plans[ACCOUNT_ID] = "free"
    with pytest.raises(openai.PermissionDeniedError) as got:
        openai_client.images.generate(prompt="a square")
    err = error_of(got.value)
    assert "plan" in err["message"] and err["code"] == "image_generation_unavailable"
    backend.catalog.plans.clear()  # the account was not rested for it: it still serves
    r = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "You said: hi"


def test_missing_prompt_and_bad_upload(proxy, backend):
    r = httpx.post(proxy.base_url + "/v1/images/generations", json={"size": "1024x1024"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.post(
        proxy.base_url + "/v1/images/edits", files={"image": ("x.png", b"not a picture", "image/png")}, data={"prompt": "p"}, timeout=30
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    r = httpx.post(proxy.base_url + "/v1/images/edits", json={"prompt": "p"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    assert backend.received == []


def test_body_over_the_limit_is_413(proxy, backend):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (65 * 1024 * 1024)
    r = httpx.post(proxy.base_url + "/v1/images/edits", files={"image": ("big.png", big, "image/png")}, data={"prompt": "p"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert backend.received == []


def test_saved_flow_notes_the_image_without_its_bytes(tmp_path, proxy_home, backend_server, backend):
    out = tmp_path / "flows.mitm"
    proxy = start_proxy(tmp_path / "p", {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url}, "-w", str(out))
    try:
        r = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "a red square"}, timeout=30)
        backend.images.native = False
        r2 = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "a red square"}, timeout=30)
    finally:
        proxy.stop()
    assert r.status_code == 200 and r2.status_code == 200
    with out.open("rb") as fh:
        flows = list(io.FlowReader(fh).stream())
    comments = [f.comment for f in flows]
    assert comments[0].startswith("images_generations · gpt-image-1.5 · dev@example.com · 50→272 tok · image via native"), comments
    assert "image via responses" in comments[1]
    for text in comments:
        assert r.json()["data"][0]["b64_json"][:40] not in text


MARKDOWN = "![generated image](data:image/png;base64," + base64.b64encode(fake.GENERATED).decode() + ")"


def test_chat_shows_the_image_as_markdown(openai_client, backend):
    tools = [{"type": "image_generation"}]
    r = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "draw"}], tools=tools)
    content = r.choices[0].message.content
    assert MARKDOWN in content and content.endswith("Here it is.")
    assert backend.received[-1].json["tools"] == [{"type": "image_generation"}]
    chunks = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "draw"}], tools=tools, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content


def test_chat_says_when_the_image_was_refused(openai_client, backend):
    r = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "draw something forbidden"}], tools=[{"type": "image_generation"}]
    )
    assert "(the image could not be generated)" in r.choices[0].message.content


def test_messages_carry_the_image_block(anthropic_client, backend):
    kwargs = {
        "model": "gpt-5.5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "draw"}],
        "tools": [{"type": "image_generation", "size": "1024x1024"}],
    }
    m = anthropic_client.messages.create(**kwargs)
    blocks = [b.model_dump() if hasattr(b, "model_dump") else dict(b) for b in m.content]
    images = [b for b in blocks if b["type"] == "image"]
    assert len(images) == 1 and images[0]["source"]["media_type"] == "image/png"
    assert base64.b64decode(images[0]["source"]["data"]) == fake.GENERATED
    assert backend.received[-1].json["tools"] == [{"type": "image_generation", "size": "1024x1024"}]
    events = list(anthropic_client.messages.create(**kwargs, stream=True))
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    streamed = [b for b in starts if b.type == "image"]
    source = streamed[0].source  # the SDK knows no image block in answers: it keeps the source as it came
    assert len(streamed) == 1 and base64.b64decode(source["data"] if isinstance(source, dict) else source.data) == fake.GENERATED
    assert [b.type for b in starts] == [b["type"] for b in blocks]
    assert sum(e.type == "content_block_stop" for e in events) == len(starts)


def test_native_usage_limit_fails_over_to_another_account(tmp_path, backend_server, backend):
    auth = tmp_path / "auth"
    mint_account(auth, "a@example.com", "acct-a")
    mint_account(auth, "b@example.com", "acct-b")
    proxy = start_proxy(tmp_path / "p", {"auth-dir": str(auth), "codex-base-url": backend_server.base_url})
    try:
        first = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "warm up"}, timeout=30)
        assert first.status_code == 200
        backend.images.queued.append((usage_limit().status, usage_limit().body))
        backend.received.clear()
        r = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "a red square"}, timeout=30)
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["data"][0]["b64_json"]) == fake.GENERATED
        accounts = [q.headers["chatgpt-account-id"] for q in backend.received]
        assert len(accounts) == 2 and set(accounts) == {"acct-a", "acct-b"}  # the refused one, then the other
        backend.images.queued.extend([(usage_limit().status, usage_limit().body)])
        r = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "again"}, timeout=30)
        assert r.status_code == 429 and r.json()["error"]["code"] == "model_cooldown", r.text  # both resting now
    finally:
        proxy.stop()
