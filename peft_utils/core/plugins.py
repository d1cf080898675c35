"""Registries other packages extend through entry points (backends, data sets): one reading
of a group, the same rules for all."""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Iterable


class PluginError(ValueError, TypeError):
    """An entry point that gives something its group does not take, or a name taken already.
    A ValueError for the commands that report bad input; a TypeError for a wrong kind."""


def registered(group: str, kinds: type | tuple[type, ...], kind_name: str, noun: str,
               taken: Iterable[str]) -> dict[str, Any]:
    """{name: object} of every entry point in `group`: an instance of `kinds`, or a function
    returning one (called once). A name in `taken` or registered twice is refused, naming
    the entry point, so a plugin cannot shadow a built-in silently."""
    taken, found = set(taken), {}
    for point in entry_points(group=group):
        value = point.load()
        if not isinstance(value, kinds) and callable(value):
            value = value()
        if not isinstance(value, kinds):
            raise PluginError(f"entry point {point.name} ({point.value}) of {group} is not a "
                              f"{kind_name}: {value!r}")
        if value.name in taken or value.name in found:
            raise PluginError(f"entry point {point.name} ({point.value}) registers {noun} "
                              f"{value.name!r}, which exists already; rename it")
        found[value.name] = value
    return found
