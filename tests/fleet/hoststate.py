"""What a host looks like, in the respects the mirror's playbooks change it: for "converge, remove, and
the host is back as it was" (issue 14).

`SNAPSHOT` is one shell script, run on the host over SSH; it prints sections ("== name") of sorted lines.
`diff_snapshots` compares two of them section by section. Pure text in, text out: testable here.
"""

from __future__ import annotations

# Files under /etc with their type, mode, owner and content hash; symlinks with their target. Left out:
# what the machine itself rewrites (machine id, resolv.conf, ld.so.cache) and the "-" backups that
# useradd/userdel write of passwd, group, shadow and gshadow (their content is compared in the originals).
SNAPSHOT = r"""
set -u
section() { echo "== $1"; }
section fstab; grep -v '^\s*#' /etc/fstab | grep -v '^\s*$' | sort
section mounts; findmnt -rn -o TARGET,SOURCE,FSTYPE | grep -vE '^/(proc|sys|dev|run)(/| )' | sort
section loop-devices; (losetup -a 2>/dev/null || true) | sort
section users; getent passwd | cut -d: -f1,3,4,6,7 | sort
section groups; getent group | cut -d: -f1,3,4 | sort
section etc
find /etc -xdev \( -path /etc/machine-id -o -path /etc/resolv.conf -o -path /etc/ld.so.cache \
    -o -path /etc/passwd- -o -path /etc/group- -o -path /etc/shadow- -o -path /etc/gshadow- \
    -o -path /etc/.pwd.lock -o -path /etc/mtab \) -prune -o -printf '%y %m %u:%g %p %l\n' | sort
find /etc -xdev -type f \( -path /etc/machine-id -o -path /etc/resolv.conf -o -path /etc/ld.so.cache \
    -o -name '*-' -o -path /etc/.pwd.lock \) -prune -o -type f -print0 | xargs -0 sha256sum | sort -k2
section dirs
find /opt /srv /usr/local /var/lib -xdev -maxdepth 1 -printf '%y %m %u:%g %p %l\n' 2>/dev/null | sort
find /var/log -xdev -maxdepth 1 -name 'pypi-mirror*' -printf '%p\n' | sort
find /var/log/nginx -xdev -name 'pypi-mirror*' -printf '%p\n' 2>/dev/null | sort
section packages; dpkg-query -W -f '${Package} ${Version}\n' | sort
section services-active
systemctl list-units --type=service,path,timer,socket --state=active --no-legend --plain 2>/dev/null \
    | awk '{print $1}' | grep -vE '^(user@|session-|ssh@|systemd-tmpfiles-clean)' | sort
section units-enabled; systemctl list-unit-files --state=enabled --no-legend 2>/dev/null | awk '{print $1}' | sort
section listening; ss -ltnH 2>/dev/null | awk '{print $4}' | sort -u
section crontabs; ls /var/spool/cron/crontabs 2>/dev/null | sort
"""


def parse_snapshot(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return sections


def diff_snapshots(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """Lines that differ, as "section: - gone" / "section: + new", in a stable order; [] when alike."""
    out: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = set(before.get(name, [])), set(after.get(name, []))
        out += [f"{name}: - {line}" for line in sorted(old - new)]
        out += [f"{name}: + {line}" for line in sorted(new - old)]
    return out
