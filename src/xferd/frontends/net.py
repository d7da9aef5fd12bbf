"""Client addresses as the frontends see them."""

from __future__ import annotations

import functools
import ipaddress


def plain_ip(address: str) -> str:
    """An IPv4 client of a dual-stack listener appears as ::ffff:a.b.c.d; this is a.b.c.d."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address


@functools.lru_cache(maxsize=1024)  # asked per request (WebDAV); the same few addresses each time
def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(plain_ip(address).split("%")[0]).is_loopback
    except ValueError:
        return False
