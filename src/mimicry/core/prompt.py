"""Prompt templates: how a dataset record becomes the messages sent to the model.

The default template, ``repr``, is exactly what the original experiment sent: one user message whose
content is ``f'{sample}'``, the Python repr of the row as ``datasets`` returns it. It is
byte-identical to ``str(dataset[i])`` (a test proves it on the real rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

Message = dict[str, str]
TemplateName = Literal["repr", "json"]


def _repr_template(record: Mapping[str, object]) -> list[Message]:
    return [{"role": "user", "content": f"{record}"}]


def _json_template(record: Mapping[str, object]) -> list[Message]:
    import json

    return [{"role": "user", "content": json.dumps(dict(record), ensure_ascii=False)}]


TEMPLATES: dict[str, Callable[[Mapping[str, object]], list[Message]]] = {
    "repr": _repr_template,
    "json": _json_template,
}
DEFAULT_TEMPLATE: TemplateName = "repr"


def render_messages(
    record: Mapping[str, object], template: str = DEFAULT_TEMPLATE
) -> list[Message]:
    """The chat messages for one record under the named template."""
    try:
        render = TEMPLATES[template]
    except KeyError:
        raise ValueError(
            f"unknown prompt template {template!r}: choose one of {', '.join(sorted(TEMPLATES))}"
        ) from None
    return render(record)


def record_text(record: Mapping[str, object]) -> str:
    """The record as the model saw it under the default template: ``str(record)``."""
    return f"{record}"
