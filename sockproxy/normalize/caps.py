"""Capability names in one spelling: upper case, without ``CAP_``; ``ALL`` for all.

Docker (moby ``oci/caps`` ``NormalizeLegacyCapabilities``) and Podman
(containers/common ``capabilities.NormalizeCapabilities``) both upper-case a
name and add the ``CAP_`` prefix when it is missing, and both accept ``ALL``.
Surrounding whitespace is dropped here too: an engine refuses such a name as
unknown, so reading it as the capability it spells only makes checks stricter.
"""

from __future__ import annotations


def normalize(name: str) -> str:
    """``cap_sys_admin``, ``CAP_SYS_ADMIN`` and ``sys_admin`` -> ``SYS_ADMIN``."""
    upper = name.strip().upper()
    bare = upper.removeprefix("CAP_")
    return "ALL" if bare == "ALL" else bare
