"""Send content parts with the official OpenAI Python SDK to a gateway whose
`main` agent is the 0.2 echo, which answers with what it received.

Usage: content_parts_check.py BASE_URL TOKEN.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

image = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
reply = client.chat.completions.create(
    model="openclaw",
    messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
    ]}],
)
expected = f"What is in this image?\n[image {image} detail=high]\n[audio wav 16 base64 bytes]"
assert reply.choices[0].message.content == expected, reply

try:
    client.chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]}])
    raise SystemExit("an unknown part was accepted")
except openai.BadRequestError as e:
    assert e.param == "messages[0].content[0]", e

print("content parts: all checks passed")
