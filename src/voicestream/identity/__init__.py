"""Identity: who a request acts as, and what that principal may do (``policy``)."""
