"""The error type for problems in the user's data, paths or config (not bugs in mdg).

``python -m mdg.main`` prints a :class:`UserError`'s message alone and exits with status 2; any
other exception is a bug and keeps its traceback. It subclasses ``ValueError`` so code that
catches ``ValueError`` still does.
"""


class UserError(ValueError):
    """Bad input: the message says what is wrong, which file or key, and what was expected."""
