"""The one exception type for mistakes a user can fix (bad names, strings, files, values)."""


class UserError(ValueError):
    """A problem in the user's input; its message names the problem and the fix.

    The command line prints it as one line and exits non-zero, never as a traceback.
    """


def quoted(value, limit: int = 80) -> str:
    """`repr(value)` cut to about `limit` characters, nested containers included, without
    building the whole repr (a YAML alias bomb would expand to gigabytes): for values
    that an error message quotes."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel = 3
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 6
    shortener.maxstring = shortener.maxother = shortener.maxlong = limit
    text = shortener.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name if none), for the
    one-line errors that quote a library's error."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()),
                type(error).__name__)[:limit]


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes, line breaks) and undecodable bytes
    shown escaped, for names a user's files supply that get printed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1]
                   for c in text.encode("utf-8", "backslashreplace").decode("utf-8"))
