"""``forensics-admin``: create tenants, create, list and revoke API keys (on ``DATABASE_URL``).

The schema is brought to ``head`` first (``alembic upgrade head`` is idempotent), so the
tool also works on a fresh embedded home.
"""

import argparse
import sys
from collections.abc import Sequence

from service.db import migrate, session_scope
from service.tenants import (
    TenantError,
    adopt_orphan_cases,
    create_key,
    create_tenant,
    find_tenant,
    list_keys,
    list_tenants,
    revoke_key,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forensics-admin", description="Tenants and API keys of the forensics service.")
    parser.add_argument("--no-migrate", action="store_true", help="do not run 'alembic upgrade head' first")
    groups = parser.add_subparsers(dest="group", required=True)
    tenant = groups.add_parser("tenant", help="tenants").add_subparsers(dest="action", required=True)
    tenant_create = tenant.add_parser("create", help="create a tenant")
    tenant_create.add_argument("name")
    tenant_create.add_argument("--requests-per-minute", type=int, default=None)
    tenant_create.add_argument("--images-per-day", type=int, default=None)
    tenant.add_parser("list", help="list tenants")
    tenant_adopt = tenant.add_parser("adopt", help="give the cases made before tenants existed to a tenant")
    tenant_adopt.add_argument("tenant")
    key = groups.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create", help="create a key (printed once, never stored)")
    key_create.add_argument("tenant", help="tenant name or id")
    key_create.add_argument("--name", default=None, help="what the key is for")
    key_revoke = key.add_parser("revoke", help="revoke a key by its prefix (fsk_xxxxxxxx)")
    key_revoke.add_argument("prefix")
    key_list = key.add_parser("list", help="list a tenant's keys (prefixes only)")
    key_list.add_argument("tenant")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.no_migrate:
        migrate()
    out = sys.stdout
    try:
        with session_scope() as session:
            if args.group == "tenant" and args.action == "create":
                tenant = create_tenant(session, args.name)
                tenant.requests_per_minute, tenant.images_per_day = args.requests_per_minute, args.images_per_day
                session.commit()
                out.write(f"{tenant.id}\t{tenant.name}\n")
            elif args.group == "tenant" and args.action == "adopt":
                out.write(f"{adopt_orphan_cases(session, find_tenant(session, args.tenant))} cases adopted\n")
            elif args.group == "tenant":
                for tenant in list_tenants(session):
                    out.write(f"{tenant.id}\t{tenant.name}\t{tenant.created_at:%Y-%m-%d %H:%M}\n")
            elif args.action == "create":
                out.write(create_key(session, find_tenant(session, args.tenant), name=args.name) + "\n")
            elif args.action == "revoke":
                revoked = revoke_key(session, args.prefix)
                out.write(f"revoked {revoked.prefix}\n")
            else:
                for key in list_keys(session, find_tenant(session, args.tenant)):
                    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                    out.write(f"{key.prefix}\t{state}\t{key.created_at:%Y-%m-%d %H:%M}\t{key.name or ''}\n")
    except TenantError as exc:
        sys.stderr.write(f"forensics-admin: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
