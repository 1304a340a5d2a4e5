"""Test doubles: local stand-ins for outside services. None of them is the real service; each says
which documentation it was written from."""
