"""YAML without aliases: a settings file has no use for them, and nested aliases expand exponentially (a 270-byte
"billion laughs" file costs a minute and gigabytes with `yaml.safe_load`)."""

from __future__ import annotations

from typing import Any

import yaml


class NoAliasSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses every alias (`*name`), so no document can expand beyond its own size."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in deit settings", event.start_mark
            )
        return super().compose_node(parent, index)


def safe_load_no_aliases(text: str) -> Any:
    """`yaml.safe_load` that refuses aliases (raises `yaml.YAMLError`)."""
    return yaml.load(text, Loader=NoAliasSafeLoader)  # noqa: S506 - a SafeLoader subclass
