"""What each role may do. Every endpoint names one permission; nothing else decides access.

Duties are separated as a force separates them: operators run deployments and searches,
engagement officers record what happened after an alert, authorising officers approve
watchlists and deployments, auditors read the log, and administrators manage accounts and
retention — without access to biometric data, which they do not need. A monitoring system
(Prometheus) reads the server's metrics and nothing else.
"""

from __future__ import annotations

import enum

from openfrt.records.users import Role


class Permission(str, enum.Enum):
    view_subjects = "view_subjects"
    enrol = "enrol"
    remove_subjects = "remove_subjects"
    view_reference_images = "view_reference_images"
    #: Only the matched subject's reference image, beside an alert the user handles.
    view_alert_reference = "view_alert_reference"
    view_watchlists = "view_watchlists"
    manage_watchlists = "manage_watchlists"
    view_deployments = "view_deployments"
    plan_deployments = "plan_deployments"
    authorise_deployments = "authorise_deployments"
    run_deployments = "run_deployments"
    view_alerts = "view_alerts"
    adjudicate = "adjudicate"
    hold_alert_media = "hold_alert_media"
    search = "search"
    view_audit = "view_audit"
    manage_users = "manage_users"
    run_retention = "run_retention"
    manage_integrations = "manage_integrations"
    read_metrics = "read_metrics"
    migrate_models = "migrate_models"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.operator: frozenset({
        Permission.view_subjects, Permission.enrol, Permission.view_reference_images, Permission.view_watchlists,
        Permission.view_deployments, Permission.plan_deployments, Permission.run_deployments,
        Permission.view_alerts, Permission.adjudicate, Permission.search, Permission.view_alert_reference,
    }),
    Role.engagement_officer: frozenset({
        Permission.view_alert_reference, Permission.view_deployments, Permission.view_alerts, Permission.adjudicate,
    }),
    Role.authorising_officer: frozenset({
        Permission.view_subjects, Permission.enrol, Permission.remove_subjects, Permission.view_reference_images,
        Permission.view_watchlists, Permission.manage_watchlists, Permission.view_deployments,
        Permission.plan_deployments, Permission.authorise_deployments, Permission.run_deployments,
        Permission.view_alerts, Permission.hold_alert_media, Permission.view_alert_reference,
        Permission.view_alerts, Permission.hold_alert_media, Permission.migrate_models,
    }),
    Role.auditor: frozenset({Permission.view_deployments, Permission.view_audit}),
    Role.admin: frozenset({Permission.view_deployments, Permission.view_audit, Permission.manage_users, Permission.run_retention,
                           Permission.manage_integrations, Permission.read_metrics}),
    Role.monitoring: frozenset({Permission.read_metrics}),
}


def can(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
