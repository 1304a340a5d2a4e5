"""Who is signing in and for whom: accounts, passwords and sessions (``auth``), the members of an
organisation and their roles (``users``), and the organisations themselves (``organisations``)."""
