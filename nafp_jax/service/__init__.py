"""`nafp serve`: a long-lived HTTP query service over one catalogue (see server.py)."""
