"""Audit the installed dependency set without the network.

`pip-audit` needs the vulnerability databases on the internet, which CI cannot reach.
This check stands in for it with what is local:

1. every requirement of pyproject.toml (the package and its extras) has a pin in
   constraints.txt, and the pin meets the requirement's floor (the floors are raised
   above known vulnerable versions, with the advisory named beside them);
2. every pinned package that is installed here has exactly the pinned version, so
   the tests ran on the audited set (a pin another Python version does not need,
   e.g. a backport, is noted, not failed).

Exit 1 with one line per problem; 0 and a one-line summary otherwise.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, Version]:
    """name -> pinned version, from `name==version` lines."""
    found: dict[str, Version] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"constraints.txt: not a pin: {raw!r}")
        found[canonicalize_name(name)] = Version(version.strip())
    return found


def requirements(path: Path) -> list[Requirement]:
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared.extend(extra)
    return [Requirement(text) for text in declared]


def main() -> int:
    pinned = pins(ROOT / "constraints.txt")
    problems: list[str] = []
    for req in requirements(ROOT / "pyproject.toml"):
        name = canonicalize_name(req.name)
        version = pinned.get(name)
        if version is None:
            problems.append(f"{req.name}: required ({req}) but not pinned in constraints.txt")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: pinned {version} does not meet {req}")
    installed_count = 0
    for name, version in sorted(pinned.items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            # A backport another Python version does not need: not a problem.
            print(f"dependencies: note: {name} is pinned but not installed here")
            continue
        installed_count += 1
        if installed != version:
            problems.append(f"{name}: installed {installed}, pinned {version}")
    for line in problems:
        print(f"dependencies: {line}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"dependencies: {installed_count} of {len(pinned)} pins installed as pinned; "
        "every requirement's floor in pyproject.toml met"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
