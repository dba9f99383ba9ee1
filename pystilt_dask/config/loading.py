"""YAML read safely: one document, refused when its aliases expand past reason."""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError

#: Most values a YAML document may hold once its aliases are expanded.
MAX_YAML_VALUES = 100_000


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document safely, refusing one whose aliases expand past reason.

    An alias repeats a node without copying it, so a few lines of nested aliases
    (a "billion laughs" document) stand for more values than memory holds once
    anything walks them. The expanded size is counted on the parsed graph, each
    node once, before any Python object is built.

    Raises
    ------
    ConfigError
        For invalid YAML, or more than :data:`MAX_YAML_VALUES` values expanded.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, {})
        if expanded > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: its YAML aliases expand to more than {MAX_YAML_VALUES} values; "
                "write the settings out instead"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    # Iterative, with each node's size kept once: a shared node counts every time it
    # is used (as it would be expanded) but is visited once.
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        if id(current) in seen:
            continue
        children = _children(current)
        if children_done or not children:
            seen[id(current)] = 1 + sum(seen[id(c)] for c in children)
            continue
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in seen)
    return seen[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
