"""Who is signing in and for whom: accounts, passwords and sessions (``auth``), the members of an
organisation and their roles (``users``), the organisations themselves (``organisations``), and
the checks of what people type about themselves (``validation``)."""
