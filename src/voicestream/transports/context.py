"""Who a transport handler acts for: the request's principal.

The server's shared resources are app keys of their own, one each, in ``rest/resources.py``.
"""

from __future__ import annotations

from ..identity.request_principal import PRINCIPAL, optional_principal, principal_of

__all__ = ["PRINCIPAL", "optional_principal", "principal_of"]
