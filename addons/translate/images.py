"""OpenAI Images (`/v1/images/generations`, `/v1/images/edits`) served from the Codex backend (pure).

Two upstream paths exist. The backend's native `images/generations` and `images/edits` (what the Codex
CLI's `$imagegen` calls) take almost the OpenAI body and answer almost the OpenAI shape, so they are
tried first. Where the native path answers 404, the same request becomes a `/responses` call that forces
the `image_generation` tool (`tool_choice: {"type": "image_generation"}`), and the finished stream's
`image_generation_call` items are folded into the Images answer. Only `b64_json` answers exist: the
backend hosts no image URLs.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import time
from dataclasses import dataclass, field
from typing import Any

from cliproxy.addons.translate import codex_body, errors
from cliproxy.addons.translate.stream import Collector

#: The image model the native endpoints are asked for when the client names none (or a non-image model).
NATIVE_MODEL = "gpt-image-1.5"
#: The chat model that drives the `/responses` fallback (classic form: its tools travel at the top level).
DRIVER_MODEL = "gpt-5.5"
SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("auto", "low", "medium", "high")
BACKGROUNDS = ("auto", "transparent", "opaque")
FORMATS = ("png", "jpeg", "webp")
NOT_GENERATED = "(the image could not be generated)"
#: Image types an edit may carry, by their leading bytes.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"))


@dataclass(slots=True)
class ImageRequest:
    """A checked Images request: what both upstream paths are built from."""

    prompt: str
    model: str = NATIVE_MODEL
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    images: list[str] = field(default_factory=list)  # data URLs (edits)
    mask: str | None = None  # data URL (edits)

    def options(self) -> dict[str, Any]:
        """Plain values for the fallback's aggregator (FlowState keeps them)."""
        return {"size": self.size, "quality": self.quality, "background": self.background, "output_format": self.output_format}


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], aliases: dict[str, str] | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str) and aliases and value in aliases:
        value = aliases[value]
    if not isinstance(value, str) or value not in allowed:
        raise errors.bad_request(
            f"Invalid value for `{name}`: {str(value)[:40]!r}; expected one of {', '.join(allowed)}", name, "invalid_value"
        )
    return value


def data_url(raw: bytes, where: str) -> str:
    """A data URL for an uploaded image; anything but PNG, JPEG or WebP bytes is a 400."""
    mime = next((m for magic, m in _MAGIC if raw.startswith(magic)), None)
    if mime is None:
        raise errors.bad_request(f"`{where}` is not a PNG, JPEG or WebP image", where, "invalid_image")
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def _edit_image(value: Any, where: str) -> str:
    """One edit input from JSON: `{"image_url": "data:..."}`, a data URL string, or a `{"b64_json"}` object."""
    if isinstance(value, dict):
        value = value.get("image_url", value.get("url", value.get("b64_json")))
    if isinstance(value, str) and value.startswith("data:image/"):
        return value
    if isinstance(value, str):
        try:
            return data_url(base64.b64decode(value, validate=True), where)
        except (binascii.Error, ValueError):
            pass
    raise errors.bad_request(
        f"`{where}` must be an image as a data URL or base64 (image URLs on the web are not fetched)", where, "invalid_image"
    )


def parse(body: Any, edit: bool) -> ImageRequest:
    """Check an Images request body (JSON, or the fields of a multipart form) and read it."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise errors.bad_request("`prompt` is required and must be a non-empty string", "prompt", "missing_required_parameter")
    n = body.get("n")
    if n is not None and n not in (1, "1"):
        raise errors.bad_request("only `n: 1` is served: the subscription makes one image per request", "n", "invalid_value")
    if body.get("response_format") not in (None, "b64_json"):
        raise errors.bad_request("only `response_format: b64_json` is served: the backend hosts no image URLs", "response_format")
    if body.get("stream") in (True, "true"):
        raise errors.bad_request("streamed image answers are not served; leave `stream` unset", "stream", "unsupported_parameter")
    model = body.get("model")
    req = ImageRequest(
        prompt=prompt,
        model=model if isinstance(model, str) and model.startswith("gpt-image") else NATIVE_MODEL,
        size=_choice(body, "size", SIZES),
        quality=_choice(body, "quality", QUALITIES, {"standard": "medium", "hd": "high"}),
        background=_choice(body, "background", BACKGROUNDS),
        output_format=_choice(body, "output_format", FORMATS),
    )
    if edit:
        given = body.get("images", body.get("image"))
        items = given if isinstance(given, list) else [] if given is None else [given]
        if not items:
            raise errors.bad_request("an edit needs at least one input `image`", "image", "missing_required_parameter")
        req.images = [_edit_image(v, f"image[{i}]") for i, v in enumerate(items)]
        if body.get("mask") is not None:
            req.mask = _edit_image(body["mask"], "mask")
    return req


def parse_multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a `multipart/form-data` body (as the openai SDK sends edits): text fields as strings,
    files (`image`, `image[]`, `mask`) as data URLs; repeated `image` fields make a list."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + raw
    )
    if not msg.is_multipart():
        raise errors.bad_request("the multipart body cannot be read: check its boundary")
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None or name in ("image", "image[]", "mask"):
            key = "mask" if name == "mask" else "image"
            value: Any = data_url(data, key)
            if key == "image":
                out.setdefault("image", []).append(value)
                continue
        else:
            value = data.decode("utf-8", "replace")
            if name == "n" and value.isdigit():
                value = int(value)
        out[name] = value
    return out


def native_body(req: ImageRequest) -> dict[str, Any]:
    """The body of the backend's native `images/generations` or `images/edits` call."""
    body: dict[str, Any] = {"prompt": req.prompt, "model": req.model}
    for key in ("size", "quality", "background", "output_format"):
        if (value := getattr(req, key)) is not None:
            body[key] = value
    if req.images:
        body["images"] = [{"image_url": url} for url in req.images]
        if req.mask is not None:
            body["mask"] = {"image_url": req.mask}
    return body


def responses_call(req: ImageRequest) -> codex_body.CodexCall:
    """The `/responses` fallback: one user turn with the prompt (and input images), the tool forced."""
    tool: dict[str, Any] = {"type": "image_generation", "output_format": req.output_format or "png"}
    for key in ("size", "quality", "background"):
        if (value := getattr(req, key)) is not None:
            tool[key] = value
    content: list[dict[str, Any]] = [{"type": "input_text", "text": req.prompt}]
    content += [{"type": "input_image", "image_url": url} for url in req.images]
    body = {
        "model": DRIVER_MODEL,
        "instructions": "",
        "input": [{"type": "message", "role": "user", "content": content}],
        "tools": [tool],
        "tool_choice": {"type": "image_generation"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
    }
    return codex_body.CodexCall(codex_body.finalize(body), False, DRIVER_MODEL, "low", req.options())


def answer_from_native(got: Any, req: ImageRequest) -> dict[str, Any]:
    """The client's answer from the native endpoint's JSON (already the OpenAI shape; checked, not trusted)."""
    data = got.get("data") if isinstance(got, dict) else None
    images = [d for d in data or [] if isinstance(d, dict) and isinstance(d.get("b64_json"), str)]
    if not images:
        raise errors.ProxyError(502, "the upstream's image answer held no image", "server_error", "no_image")
    out: dict[str, Any] = {
        "created": got["created"] if isinstance(got.get("created"), int) else int(time.time()),
        "data": [{k: v for k, v in d.items() if k in ("b64_json", "revised_prompt")} for d in images],
    }
    for key in ("background", "output_format", "quality", "size", "usage"):
        if got.get(key) is not None:
            out[key] = got[key]
    return out


def answer_from_stream(collector: Collector, options: dict[str, Any]) -> dict[str, Any]:
    """The client's answer from a finished `/responses` stream: its `image_generation_call` results.

    No image in a completed answer means the tool was not there to call: free plans strip it silently,
    so this is the plan's refusal (403), said as such rather than an empty `data`."""
    final = collector.final_response()
    calls = [i for i in final.get("output") or [] if isinstance(i, dict) and i.get("type") == "image_generation_call"]
    images = [c for c in calls if isinstance(c.get("result"), str) and c["result"]]
    if not images:
        if calls:
            raise errors.ProxyError(
                400, "the image request was refused by the upstream's safety system", "invalid_request_error", "moderation_blocked"
            )
        raise errors.ProxyError(
            403,
            "this account's plan does not include image generation (the upstream answered without the image tool)",
            "permission_error",
            "image_generation_unavailable",
        )
    out: dict[str, Any] = {
        "created": final["created_at"] if isinstance(final.get("created_at"), int) else int(time.time()),
        "data": [
            {"b64_json": c["result"], **({"revised_prompt": c["revised_prompt"]} if isinstance(c.get("revised_prompt"), str) else {})}
            for c in images
        ],
    }
    for key in ("background", "output_format", "quality", "size"):
        value = images[0].get(key) or options.get(key)
        if value is not None:
            out[key] = value
    tool_usage = final.get("tool_usage")
    usage = tool_usage.get("image_gen") if isinstance(tool_usage, dict) else None
    if isinstance(usage, dict):
        out["usage"] = usage
    return out


def image_of(item: dict[str, Any]) -> tuple[str, str] | None:
    """(media type, base64 data) of a finished `image_generation_call` item, or None when it holds no image."""
    result = item.get("result")
    if item.get("type") != "image_generation_call" or not isinstance(result, str) or not result:
        return None
    fmt = item.get("output_format")
    return (f"image/{fmt}" if fmt in ("png", "jpeg", "webp") else "image/png"), result


def markdown_image(item: dict[str, Any]) -> str:
    """How a Chat client sees a generated image: a markdown image with a data URL (a Chat answer's content is
    text only); one that failed is said in words, never dropped silently."""
    got = image_of(item)
    if got is None:
        return f"\n\n{NOT_GENERATED}\n\n"
    mime, data = got
    return f"\n\n![generated image](data:{mime};base64,{data})\n\n"
