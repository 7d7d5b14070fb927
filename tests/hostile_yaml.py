"""Hostile configuration files shared by the service and the command-line tests."""

from __future__ import annotations


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 600-byte file from issue 8: nested aliases in an ignored key of a record."""
    lines = ["postroom_config: 1", "dns_templates:", "- name: Bomb", "  records:"]
    lines.append("  - {host: a, type: TXT, value: b, note: &l0 [lol, lol, lol, lol, lol]}")
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"  - {{host: a{level}, type: TXT, value: b, note: &l{level} [{refs}]}}")
    return "\n".join(lines) + "\n"
