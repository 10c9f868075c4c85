"""Supply-chain policy at the mirror (issue 13): which upstream files the mirror may serve.

- `durations`: durations ("7d", "P7D") and instants (RFC 3339) in the configuration and upstream data;
- `settings`: the policy's configuration keys, validated into one frozen PolicySettings;
- `cvss`: the CVSS v3.x base score of a vector, and its rating;
- `osv`: OSV advisories for PyPI from a local export (zip or directory), bounded against hostile input;
- `rules`: the verdict on one file (held back, blocked, or mirrored), and the key of a project's policy.

Everything is pure but reading the export (osv.load_advisories) and the clock (rules.clock_now).
Import the modules themselves: the package imports nothing, so that a configuration without a
policy (every sync's) loads only `settings`, and that without the requirement parser.
"""
