from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from broker.health import healthz

urlpatterns = [
    path("", include("decisions.urls")),
    path("healthz", healthz, name="healthz"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("admin/", admin.site.urls),
]

handler400 = "broker.errors.json_bad_request"
handler403 = "broker.errors.json_permission_denied"
handler404 = "broker.errors.json_not_found"
handler500 = "broker.errors.json_server_error"
