"""A command's options read from a TOML file (``fewshot ... --config FILE``), by parameter name.

A file is flat (``ways = 5``), or holds a table per command (``[train]``, ``[plot.curves]``),
of which a command reads its own. Keys are the long options, with ``-`` or ``_``
(``first-order = true``), or the names of the command's arguments (``algorithm = "maml"``).
Light (no click, no torch): the command line turns the values into its defaults.

Example::

    ways = Parameter("ways", ("ways",))
    command_options("experiment.toml", "fewshot train", {"train", "eval"}, [ways])
    # {"ways": 5} for a file holding "[train]\\nways = 5"
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fewshot_cli.errors import FewshotError


@dataclass(frozen=True)
class Parameter:
    """A parameter of a command that a file may set: its name, its long options (without
    ``--``) and whether it takes several values (a repeatable option, an argument of many)."""

    name: str
    longs: tuple[str, ...] = ()
    multiple: bool = False


def read_toml(path: str | Path) -> dict:
    """The contents of the TOML file ``path``.

    Raises:
        FewshotError: the file cannot be read or is not TOML.
    """
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise FewshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not a TOML file ({exc})") from None


def command_table(
    values: dict, path: str | Path, command: Sequence[str], commands: Collection[str]
) -> dict:
    """The values meant for ``command`` (its names under the program: ``["plot", "curves"]``).

    A file with a table named after one of ``commands`` (the program's commands) holds one
    table per command: only ``command``'s is read, without its sub-tables. Any other file is
    flat, all of it for the command.

    Raises:
        FewshotError: ``command``'s entry in the file is not a table.
    """
    if not any(key in commands and isinstance(value, dict) for key, value in values.items()):
        return values
    for name in command:
        values = values.get(name, {})
        if not isinstance(values, dict):
            raise FewshotError(f"{path}: [{'.'.join(command)}] is not a table")
    return {key: value for key, value in values.items() if not isinstance(value, dict)}


def command_options(
    path: str | Path, command_path: str, commands: Collection[str], parameters: Iterable[Parameter]
) -> dict:
    """The values ``path`` gives the command ``command_path`` (``"fewshot plot curves"``), by
    parameter name.

    Args:
        path: the TOML file.
        command_path: the program and command names, as the user types them.
        commands: the program's commands (their names mark a file of one table per command).
        parameters: what the command takes.

    Raises:
        FewshotError: an unreadable file, not TOML, or a key that is none of ``parameters``
            (the message lists them).
    """
    values = command_table(read_toml(path), path, command_path.split()[1:], commands)
    parameters = list(parameters)
    names, shown = {}, set()  # key (long option or parameter name, - as _) -> parameter name
    for parameter in parameters:
        names[parameter.name] = parameter.name
        names.update({long.replace("-", "_"): parameter.name for long in parameter.longs})
        shown.update(parameter.longs or [parameter.name])
    multiple = {parameter.name for parameter in parameters if parameter.multiple}
    found = {}
    for key, value in values.items():
        name = names.get(key.replace("-", "_"))
        if name is None:
            known = ", ".join(sorted(shown))
            raise FewshotError(
                f"{path}: '{key}' is no option of {command_path} (its options: {known})"
            )
        # One value of a repeatable option or argument may come as a string ("maml,protonet").
        found[name] = [value] if name in multiple and isinstance(value, str) else value
    return found
