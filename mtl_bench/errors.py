"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem the user can fix (bad name, bad file, bad value); never shown with a traceback."""
