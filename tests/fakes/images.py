"""The fake backend's images: real PNG bytes, the native image endpoints, and the image tool's events.

What the real backend refuses is refused here too: sizes, qualities and formats outside its lists, a
transparent background in JPEG, a prompt its safety system blocks, and (on free plans) the native
endpoints; free plans also lose the `image_generation` tool of a Responses request silently.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

BLOCKED_WORD = "forbidden"  # a prompt holding it is refused by the safety system
SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("auto", "low", "medium", "high")
FORMATS = ("png", "jpeg", "webp")


def tiny_png(rgb: tuple[int, int, int] = (255, 0, 0), side: int = 2) -> bytes:
    """A valid `side`×`side` PNG of one colour, built with zlib and struct."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


GENERATED = tiny_png((255, 0, 0))  # what a generation returns
EDITED = tiny_png((0, 0, 255))  # what an edit returns
PARTIAL = tiny_png((128, 128, 128))  # a partial image event's picture
IMAGE_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
    "output_tokens": 272,
    "total_tokens": 322,
}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _invalid(param: str, message: str, code: str = "invalid_value") -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def refusal(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """What the backend refuses of image options (native body or image tool), or None."""
    for key, allowed in (("size", SIZES), ("quality", QUALITIES), ("output_format", FORMATS)):
        if key in body and body[key] not in allowed:
            return _invalid(key, f"Invalid value: '{body[key]}'. Supported values are: {', '.join(repr(a) for a in allowed)}.")
    if body.get("background") == "transparent" and body.get("output_format") == "jpeg":
        return _invalid("background", "Transparent background is not supported for the jpeg output format.")
    return None


def blocked(prompt: Any) -> bool:
    return isinstance(prompt, str) and BLOCKED_WORD in prompt.lower()


@dataclass
class FakeImages:
    native: bool = True  # False: the native endpoints answer 404 (the `/responses` form must serve)
    queued: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (status, JSON) answered first, in order

    def reset(self) -> None:
        self.native = True
        self.queued.clear()

    def answer(self, path: str, body: Any, plan: str) -> tuple[int, dict[str, Any]]:
        """The native `images/generations` or `images/edits` answer."""
        if not self.native:
            return 404, {"detail": "Not Found"}
        if self.queued:
            return self.queued.pop(0)
        if plan == "free":
            return 403, {
                "error": {
                    "message": "Image generation is not available on your plan.",
                    "type": "invalid_request_error",
                    "code": "usage_not_included",
                    "param": None,
                }
            }
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
        edit = path.endswith("/images/edits")
        if edit and not (isinstance(body.get("images"), list) and body["images"]):
            return _invalid("images", "Missing required parameter: 'images'.", "missing_required_parameter")
        if edit and not all(isinstance(i, dict) and str(i.get("image_url", "")).startswith("data:image/") for i in body["images"]):
            return _invalid("images", "Invalid image: expected a data URL.")
        if "n" in body and body["n"] != 1:
            return _invalid("n", "Only n=1 is supported.")
        if (refused := refusal(body)) is not None:
            return refused
        if blocked(body["prompt"]):
            return 400, {
                "error": {
                    "message": "Your request was rejected as a result of our safety system.",
                    "type": "image_generation_user_error",
                    "code": "moderation_blocked",
                    "param": None,
                }
            }
        return 200, {
            "created": 1_765_000_000,
            "background": body.get("background", "opaque"),
            "data": [{"b64_json": _b64(EDITED if edit else GENERATED), "revised_prompt": "A red square."}],
            "output_format": body.get("output_format", "png"),
            "quality": body.get("quality", "medium"),
            "size": body.get("size", "1024x1024"),
            "usage": IMAGE_USAGE,
        }


def image_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    return (
        next((t for t in tools if isinstance(t, dict) and t.get("type") == "image_generation"), None) if isinstance(tools, list) else None
    )


def user_prompt(body: dict[str, Any]) -> tuple[str, int]:
    """The last user text and how many input images the request holds."""
    text, pictures = "", 0
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("role") == "user" and isinstance(item.get("content"), list):
            text = "".join(p.get("text", "") for p in item["content"] if isinstance(p, dict) and p.get("type") == "input_text")
            pictures = sum(1 for p in item["content"] if isinstance(p, dict) and p.get("type") == "input_image")
    return text, pictures
