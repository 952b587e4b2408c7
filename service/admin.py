"""``forensics-admin``: create tenants and set their anomaly defaults, create, list and revoke API keys (on ``DATABASE_URL``).

The schema is brought to ``head`` first (``alembic upgrade head`` is idempotent), so the
tool also works on a fresh embedded home.
"""

import argparse
import sys
from collections.abc import Sequence

from service import anomalies
from service.db import migrate, session_scope
from service.settings import get_settings
from service.tenants import (
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
    tenant_limits = tenant.add_parser(
        "anomaly-limits", help="show or set a tenant's default anomaly limits (a case's own limits override them)"
    )
    tenant_limits.add_argument("tenant")
    for name in anomalies.LIMITS:
        tenant_limits.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None, metavar="N")
    tenant_limits.add_argument("--clear", action="store_true", help="drop the tenant's own limits first (back to the settings)")
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
            elif args.group == "tenant" and args.action == "anomaly-limits":
                changes = {name: getattr(args, name) for name in anomalies.LIMITS}
                limits = anomalies.set_tenant_defaults(get_settings(), find_tenant(session, args.tenant), changes, clear=args.clear)
                session.commit()
                out.write("".join(f"{name}\t{value:g}\n" for name, value in limits.items()))
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
    except ValueError as exc:  # a TenantError, or a limit out of range
        sys.stderr.write(f"forensics-admin: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
