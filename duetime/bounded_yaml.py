"""YAML read safely and within bounds: the safe loader, no anchors or aliases (no billion laughs:
nothing expands beyond the bytes read), at most MAX_DEPTH levels deep, timestamps left as text
(so a YAML document means what the same JSON would). Used for jobs files (ADR 0037)."""

from __future__ import annotations

from typing import Any

import yaml

from schemas.api import MAX_JSON_DEPTH

MAX_DEPTH = MAX_JSON_DEPTH
NO_ALIASES = ("YAML anchors (&name) and aliases (*name) are not accepted; quote a value that "
              "starts with * (a cron expression: \"* * * * *\")")


class _BoundedLoader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, NO_ALIASES, event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def load(text: str) -> Any:
    """The one document in `text`; raises yaml.YAMLError (or RecursionError) when it is not
    well-formed or not within the bounds."""
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass


def reason(exc: yaml.YAMLError) -> str:
    """What is wrong, with its line, in a sentence for the person who wrote the file."""
    if isinstance(exc, yaml.MarkedYAMLError):
        where = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark else ""
        # `schedule: * * * * *` unquoted: the scanner reads an alias without a name.
        hint = f"; {NO_ALIASES}" if "alias" in (exc.context or "") or \
            "anchor" in (exc.context or "") else ""
        return f"{exc.problem or exc.context or 'invalid'}{where}{hint}"
    return str(exc)[:200]
