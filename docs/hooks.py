"""mkdocs hooks (mkdocs.yml `hooks:`): the parts of the site that must not drift from the code.

- ``<!-- cli: trash drop -->`` in a page becomes that command's usage, arguments and options,
  read from the Typer app (the same text `--help` prints); ``<!-- cli-commands -->`` becomes the
  table of every command and ``<!-- cli-global-options -->`` the options before the command.
- ``<!-- pytest-options -->`` becomes the pytest plugin's options, from its settings module.
- The nav entry ``findings/README.md`` becomes a section: the index, then every code's page
  found in docs/findings/ (generated from the catalogue, tests/test_findings.py).
- A command without its page ``commands/<path>.md`` is a warning, so `--strict` fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.alembic_repair")

PROG = "alembic-repair"
MARKER = re.compile(r"<!--\s*(cli|cli-commands|cli-global-options|pytest-options)"
                    r"(?::\s*([a-z -]+?))?\s*-->")


def _root() -> tuple[Any, Any]:
    from alembic_repair.cli.app import app

    command = typer.main.get_command(app)
    return command, typer.Context(command, info_name=PROG)


def commands() -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """Every command and subcommand: (path without the program, command, its context)."""
    root, ctx = _root()

    def walk(group: Any, parent: Any, path: tuple[str, ...]) -> Iterator[Any]:
        for name in group.list_commands(parent):
            command = group.get_command(parent, name)
            if command is None or command.hidden:
                continue
            sub = typer.Context(command, info_name=name, parent=parent)
            yield (*path, name), command, sub
            if hasattr(command, "list_commands"):
                yield from walk(command, sub, (*path, name))

    yield from walk(root, ctx, ())


def page_of(path: tuple[str, ...]) -> str:
    """The docs page of a command: commands/trash-drop.md for `trash drop`."""
    return f"commands/{'-'.join(path)}.md"


def _md(text: str) -> str:
    """Help text as literal markdown: `code spans` kept, `_ar_trash_*` and `<UTC stamp>` not
    read as emphasis or HTML."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([\\*_\[\]])", r"\\\1", parts[i]).replace(
            "<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def _params(ctx: Any, command: Any, kind: str) -> list[str]:
    lines = []
    for param in command.params:
        if param.param_type_name != kind or getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        text = " ".join(text.split())
        lines.append(f"- `{names}`" + (f": {_md(text)}" if text else ""))
    return lines


def _usage(ctx: Any, command: Any) -> str:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    pieces = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), pieces)  # typer's {table}
    pieces = re.sub(r"\[(\w+)\]", lambda m: f"[{m.group(1).upper()}]"
                    if m.group(1) != "OPTIONS" else m.group(0), pieces)
    words = ctx.command_path.split(" ", 1)
    return f"{words[0]} [GLOBAL OPTIONS] {words[1]} {pieces}".rstrip()


def render_command(path: tuple[str, ...]) -> str:
    """A command's reference, from the Typer app: usage, its help text, arguments, options."""
    found = {words: (command, ctx) for words, command, ctx in commands()}
    if path not in found:
        raise PluginError(f"docs: no command `{PROG} {' '.join(path)}` (a <!-- cli: --> marker)")
    command, ctx = found[path]
    out = ["## Usage", "", "```text", _usage(ctx, command), "```", ""]
    if command.help:
        out += [_help_text(command.help), ""]
    arguments = _params(ctx, command, "argument")
    if arguments:
        out += ["**Arguments**", "", *arguments, ""]
    options = _params(ctx, command, "option")
    if hasattr(command, "list_commands"):
        out += ["**Commands**", ""]
        out += [f"- [`{' '.join(sub)}`]({Path(page_of(sub)).name}): "
                f"{_md(cmd.get_short_help_str(200))}"
                for sub, cmd, _ in commands() if sub[:-1] == path]
        out.append("")
    out += ["**Options**", "", *options, "- `--help`: Show the help and exit.", "",
            "The [global options](index.md#global-options) (`--project`, `--config`, `--url`, "
            "`--traceback`) go before the command.", ""]
    return "\n".join(out)


def _help_text(text: str) -> str:
    """The docstring as markdown: paragraphs kept, each one line; `\\b` markers dropped."""
    paragraphs = [_md(" ".join(p.replace("\b", "").split()))
                  for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def render_table() -> str:
    rows = ["| command | what it does |", "|---|---|"]
    rows += [f"| [`{' '.join(path)}`]({Path(page_of(path)).name}) | "
             f"{_md(command.get_short_help_str(200)).replace('|', '/')} |"
             for path, command, _ in commands()]
    return "\n".join(rows) + "\n"


def render_global_options() -> str:
    root, ctx = _root()
    usage = f"{PROG} [GLOBAL OPTIONS] COMMAND [ARGS]..."
    return "\n".join(["```text", usage, "```", "", *_params(ctx, root, "option"), ""])


def render_pytest_options() -> str:
    """The pytest plugin's ini options and command-line option, from its settings module."""
    try:
        from alembic_repair.pytest_plugin import settings
        options, enable, url_option = settings.INI, settings.ENABLE, settings.URL_OPTION
    except (ImportError, AttributeError) as err:
        raise PluginError(f"docs: <!-- pytest-options -->: the plugin's settings ({err})") from None
    lines = [f"- `{enable}` (true/false, default false): run the ready tests"]
    for name, text, default in options:
        lines.append(f"- `{name}`: {_md(' '.join(text.split()))}"
                     + (f" (default: `{default}`)" if default else ""))
    lines.append(f"- `{url_option} URL` on the command line overrides `alembic_repair_url`")
    return "\n".join(lines) + "\n"


def _replace(match: re.Match[str]) -> str:
    kind, name = match.group(1), match.group(2)
    if kind == "pytest-options":
        return render_pytest_options()
    if kind == "cli-commands":
        return render_table()
    if kind == "cli-global-options":
        return render_global_options()
    if not name:
        raise PluginError("docs: <!-- cli: --> needs a command, e.g. <!-- cli: trash drop -->")
    return render_command(tuple(name.split()))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return MARKER.sub(_replace, markdown)


def on_config(config: Any) -> Any:
    """Expand the finding codes' nav entry into the index and one page per generated code."""
    folder = Path(config["docs_dir"]) / "findings"
    codes = sorted(p.name for p in folder.glob("AR*.md"))

    def expand(items: list[Any]) -> list[Any]:
        out = []
        for item in items:
            if isinstance(item, dict):
                (title, value), = item.items()
                if value == "findings/README.md":
                    value = ["findings/README.md", *(f"findings/{name}" for name in codes)]
                elif isinstance(value, list):
                    value = expand(value)
                item = {title: value}
            out.append(item)
        return out

    if config["nav"]:
        config["nav"] = expand(config["nav"])
    return config


def on_files(files: Any, config: Any) -> Any:
    """Every command needs its page: a missing one is a warning, so a strict build fails."""
    for path, _, _ in commands():
        if files.get_file_from_path(page_of(path)) is None:
            log.warning("docs: `%s %s` has no page %s", PROG, " ".join(path), page_of(path))
    return files
