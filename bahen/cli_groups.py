"""How every ``bahen`` command group is made: help written in Markdown, reflowed to the terminal."""

from typing import Any

import typer


def command_group(help: str, **options: Any) -> typer.Typer:
    """A group of ``bahen`` commands that shows its help when called with no command."""
    return typer.Typer(rich_markup_mode="markdown", help=help, no_args_is_help=True, **options)
