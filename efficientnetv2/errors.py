"""The one exception type for mistakes a user can fix (bad names, strings, files, values)."""


class UserError(ValueError):
    """A problem in the user's input; its message names the problem and the fix.

    The command line prints it as one line and exits non-zero, never as a traceback.
    """
