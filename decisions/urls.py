from django.urls import path, register_converter

from decisions import apis


class DecisionIdConverter:
    # Anything else is a 404 before it reaches a query.
    regex = r"dec_[0-9a-z]{1,36}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(DecisionIdConverter, "decision_id")

urlpatterns = [
    path("decisions", apis.DecisionListCreateApi.as_view(), name="decisions"),
    path("decisions/<decision_id:decision_id>", apis.decision_detail, name="decision"),
    path(
        "decisions/<decision_id:decision_id>/cancel", apis.DecisionCancelApi.as_view(), name="decision-cancel"
    ),
]
