"""The planner: pure decisions about what the mirror should hold.

- `selection`: which files of a project's page a want selects (filters, environments, `latest`);
- `closure`: the dependency closure of an allowlist, walked to its fixpoint through a visitor;
- `project`: one project's plan (fetch, keep, delete, and why), for the dry run and the run alike;
- `deletions`: which projects go, and the guard against emptying the mirror;
- `keys`: the fingerprints of the settings that decide the mirror's content.

Nothing here does I/O; sync.py and project_sync.py feed it pages and state and carry out its plans.
"""
