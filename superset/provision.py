"""Provision Superset from this folder: the admin login, then every asset (database connection,
datasets, charts, dashboards), overwriting what an earlier import created.

Runs with Superset's own interpreter, inside its application context (local mode: ``lambdawatch
up``; docker-compose: the superset-init service)::

    python superset/provision.py --assets superset --admin admin

Environment: ``SUPERSET_ADMIN_PASSWORD`` (the admin's password, reset to it on every run so the
login always matches the secrets file), ``LAMBDAWATCH_DATABASE_URI`` (the data connection,
with its password; the YAML holds only a masked placeholder) and ``LAMBDAWATCH_SQL_LAB``
(``true`` exposes the connection to SQL Lab; off by default). Superset's import keys everything
by UUID, so a re-run updates in place and never duplicates.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ASSET_FOLDERS = ("databases", "datasets", "charts", "dashboards")


def read_assets(root: Path) -> dict[str, str]:
    """The bundle Superset's importer expects: relative path → YAML text."""
    contents = {"metadata.yaml": (root / "metadata.yaml").read_text()}
    for folder in ASSET_FOLDERS:
        for path in sorted((root / folder).rglob("*.yaml")):
            contents[path.relative_to(root).as_posix()] = path.read_text()
    return contents


def with_database_uri(contents: dict[str, str], uri: str, sql_lab: bool = False) -> dict[str, str]:
    """Point every database file at ``uri`` (the deployment's host, port and password), exposed
    to SQL Lab and to SQL-defined datasets only when ``sql_lab`` is on."""
    patched = dict(contents)
    for name, text in contents.items():
        if name.startswith("databases/"):
            document = yaml.safe_load(text)
            document["sqlalchemy_uri"] = uri
            document["expose_in_sqllab"] = sql_lab
            document.setdefault("extra", {})["allows_virtual_table_explore"] = sql_lab
            patched[name] = yaml.safe_dump(document, sort_keys=False)
    return patched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--admin", required=True)
    args = parser.parse_args()
    password = os.environ["SUPERSET_ADMIN_PASSWORD"]
    contents = with_database_uri(
        read_assets(args.assets),
        os.environ["LAMBDAWATCH_DATABASE_URI"],
        sql_lab=os.environ.get("LAMBDAWATCH_SQL_LAB", "false").lower() == "true",
    )

    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.utils.core import override_user

        from superset import db, security_manager

        user = security_manager.find_user(username=args.admin)
        if user is None:
            user = security_manager.add_user(
                args.admin,
                "lambdawatch",
                "admin",
                f"{args.admin}@lambdawatch.local",
                security_manager.find_role("Admin"),
                password=password,
            )
            if not user:
                print(f"could not create the Superset admin {args.admin!r}", file=sys.stderr)
                return 1
        else:
            security_manager.reset_password(user.id, password)
        db.session.commit()
        with override_user(user):
            ImportAssetsCommand(contents).run()
        print(f"imported {len(contents) - 1} asset files as {args.admin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
