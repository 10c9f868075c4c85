"""Real test hosts for the Ansible roles: systemd-nspawn containers booted on a private bridge.

See tests/fleet/README.md. Needs root; everything it creates is removed when the session ends.
"""

from .commands import FleetError, FleetUnavailable
from .fleet import Fleet
from .host import Host, HostSpec

__all__ = ["Fleet", "FleetError", "FleetUnavailable", "Host", "HostSpec"]
