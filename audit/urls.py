from django.urls import path

from audit import apis

urlpatterns = [
    path("audit/events", apis.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/export.csv", apis.AuditExportApi.as_view(), name="audit-export"),
    path("audit/decisions.csv", apis.DecisionExportApi.as_view(), name="audit-decisions-export"),
    path("audit/checkpoints", apis.CheckpointListApi.as_view(), name="audit-checkpoints"),
    path(".well-known/countersign/audit-keys", apis.AuditKeysApi.as_view(), name="audit-keys"),
]
