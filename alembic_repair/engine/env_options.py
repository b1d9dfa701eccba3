"""Setting a keyword of env.py's ``context.configure(...)`` calls, with libcst.

libcst keeps every comment and all the formatting of the user's env.py; only the one argument
changes. Used by `steps.SetEnvOption` (``compare_type=True``, ``render_as_batch=True``).
"""

from __future__ import annotations

import libcst as cst

__all__ = ["append_keyword", "set_configure_keyword"]


def set_configure_keyword(source: str, option: str, value: str) -> str:
    """`source` with ``option=value`` in every ``context.configure(...)`` call (added, or its
    value replaced); unchanged when already so, or when a call passes ``**kwargs``."""
    return cst.parse_module(source).visit(_ConfigureKeyword(option, value)).code


class _ConfigureKeyword(cst.CSTTransformer):
    def __init__(self, option: str, value: str) -> None:
        super().__init__()
        self.option, self.value = option, cst.parse_expression(value)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        func = updated.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "configure"
                and isinstance(func.value, cst.Name) and func.value.value == "context"):
            return updated
        args = list(updated.args)
        for i, arg in enumerate(args):
            if arg.keyword is not None and arg.keyword.value == self.option:
                if not arg.value.deep_equals(self.value):
                    args[i] = arg.with_changes(value=self.value)
                return updated.with_changes(args=args)
        if any(a.star for a in args):
            return updated  # **kwargs may hold it: leave the call alone
        return append_keyword(updated, self.option, self.value)


def append_keyword(call: cst.Call, option: str, value: cst.BaseExpression) -> cst.Call:
    """`call` with ``option=value`` added as its last argument, in the call's own layout (one
    argument per line stays so; a trailing comma is kept)."""
    args = list(call.args)
    new = cst.Arg(keyword=cst.Name(option), value=value,
                  equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                        whitespace_after=cst.SimpleWhitespace("")))
    if not args:
        return call.with_changes(args=[new])
    last = args[-1]
    if isinstance(last.comma, cst.Comma):  # a trailing comma: one argument per line
        args[-1], new = _append_line(last, last.comma, new, _separator(args))
    elif isinstance(last.whitespace_after_arg, cst.ParenthesizedWhitespace) and isinstance(
            call.whitespace_before_args, cst.ParenthesizedWhitespace):
        # one argument per line, no trailing comma: the new one goes on its own line
        args[-1] = last.with_changes(
            comma=cst.Comma(whitespace_after=call.whitespace_before_args),
            whitespace_after_arg=cst.SimpleWhitespace(""))
        new = new.with_changes(whitespace_after_arg=last.whitespace_after_arg)
    else:
        # arguments on a few hanging lines: the new one starts a line of its own, same indent
        broken = [a.comma.whitespace_after for a in args[:-1] if isinstance(a.comma, cst.Comma)
                  and isinstance(a.comma.whitespace_after, cst.ParenthesizedWhitespace)]
        after: cst.BaseParenthesizableWhitespace = cst.SimpleWhitespace(" ")
        if broken and isinstance(broken[-1], cst.ParenthesizedWhitespace):
            after = broken[-1].with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=after))
    return call.with_changes(args=[*args, new])


def _append_line(last: cst.Arg, comma: cst.Comma, new: cst.Arg, separator: cst.Comma
                 ) -> tuple[cst.Arg, cst.Arg]:
    """`last` keeps its comment; `new` goes on the next line and takes the closing indent."""
    after, between = comma.whitespace_after, separator.whitespace_after
    if isinstance(after, cst.ParenthesizedWhitespace) and isinstance(
            between, cst.ParenthesizedWhitespace):
        kept = comma.with_changes(whitespace_after=after.with_changes(last_line=between.last_line))
        closing = comma.with_changes(whitespace_after=after.with_changes(
            first_line=cst.TrailingWhitespace(), empty_lines=[]))
        return last.with_changes(comma=kept), new.with_changes(comma=closing)
    return last.with_changes(comma=separator), new.with_changes(comma=comma)


def _separator(args: list[cst.Arg]) -> cst.Comma:
    """The comma between two arguments of a one-per-line call: the line break and indent of the
    ones already there, without any comment that followed them."""
    if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
        after = args[-2].comma.whitespace_after
        if isinstance(after, cst.ParenthesizedWhitespace):
            after = after.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])
        return args[-2].comma.with_changes(whitespace_after=after)
    assert isinstance(args[-1].comma, cst.Comma)
    return args[-1].comma.with_changes(whitespace_after=cst.SimpleWhitespace(" "))
