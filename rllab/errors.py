"""The one exception type a user can cause; the CLI prints it as a single line."""


class RllabError(Exception):
    """An error caused by user input (bad id, bad file, bad number): printed, never a traceback."""
