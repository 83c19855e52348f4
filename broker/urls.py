from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from broker.health import healthz
from broker.metrics import metrics
from channels import registry as channel_registry
from notifications import dev_outbox

# The operator's console says whose it is, not which framework built it.
admin.site.site_header = "Countersign"
admin.site.site_title = "Countersign admin"
admin.site.index_title = "Control panel"

urlpatterns = [
    path("", include("decisions.urls")),
    path("", include("audit.urls")),
    # Each channel's inbound endpoints: /a/<token>, /slack/interactions, /teams/messages, and the
    # web channel's portal at /inbox.
    *channel_registry.urlpatterns(),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("admin/", admin.site.urls),
    path("dev/outbox/", dev_outbox.outbox_list, name="dev-outbox"),
    path("dev/outbox/<str:name>", dev_outbox.outbox_message, name="dev-outbox-message"),
]

if settings.ANYMAIL.get("WEBHOOK_SECRET"):
    # Tracking webhooks only with their shared secret: unauthenticated posts could forge
    # delivered/bounced events in the audit trail.
    urlpatterns.append(path("anymail/", include("anymail.urls")))

handler400 = "broker.errors.json_bad_request"
handler403 = "broker.errors.json_permission_denied"
handler404 = "broker.errors.json_not_found"
handler500 = "broker.errors.json_server_error"
