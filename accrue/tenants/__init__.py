"""Tenants: the registry (`registry`: ids, CRMs, statuses, sync frequencies; the `tenant`
table) and the CRM credential vault (`vault`, requirement S1: the `crm_connection` table).

Used by both the onboarding web app and the pipelines, so the rules live here once. This
package is their one public face: `from accrue import tenants`, then `tenants.add_tenant`,
`tenants.save_credentials`, ...
"""

from __future__ import annotations

from accrue.tenants.registry import (
    CRM_TYPE_PATTERN,
    NAME_MAX_LENGTH,
    TENANT_ID_PATTERN,
    Tenant,
    TenantError,
    TenantExists,
    TenantNotFound,
    add_tenant,
    get_tenant,
    list_tenants,
    offered_objects,
    require_tenant,
    set_crm_type,
    set_optional_objects,
    set_status,
    set_statuses,
    set_sync_frequency,
    validate_crm_type,
    validate_optional_objects,
    validate_status,
    validate_sync_frequency,
    validate_tenant_id,
)
from accrue.tenants.vault import (
    Connection,
    ConnectionInfo,
    ConnectionNotFound,
    SandboxRefused,
    SecretDict,
    connection_aad,
    connection_info,
    delete_connection,
    load_connection,
    rotate_keys,
    save_credentials,
)

__all__ = [
    "CRM_TYPE_PATTERN",
    "Connection",
    "ConnectionInfo",
    "ConnectionNotFound",
    "NAME_MAX_LENGTH",
    "SandboxRefused",
    "SecretDict",
    "TENANT_ID_PATTERN",
    "Tenant",
    "TenantError",
    "TenantExists",
    "TenantNotFound",
    "add_tenant",
    "connection_aad",
    "connection_info",
    "delete_connection",
    "get_tenant",
    "list_tenants",
    "load_connection",
    "offered_objects",
    "require_tenant",
    "rotate_keys",
    "save_credentials",
    "set_crm_type",
    "set_optional_objects",
    "set_status",
    "set_statuses",
    "set_sync_frequency",
    "validate_crm_type",
    "validate_optional_objects",
    "validate_status",
    "validate_sync_frequency",
    "validate_tenant_id",
]
