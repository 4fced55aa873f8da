"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem the user can fix (bad name, bad file, bad value); never shown with a traceback."""


def field_error(exc: Exception) -> str:
    """``field 'a.b' = value: message`` for the first error of a pydantic ValidationError."""
    err = exc.errors()[0]  # type: ignore[attr-defined]
    field = ".".join(str(p) for p in err["loc"])
    value = err.get("input") if err["type"] != "missing" else "(missing)"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"field {field!r} = {shown}: {err['msg']}"
