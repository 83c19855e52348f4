from django.urls import path

from portal import views

urlpatterns = [
    path("inbox", views.inbox, name="portal-inbox"),
    path("inbox/sign-in", views.sign_in_request, name="portal-sign-in"),
    path("inbox/sign-in/<str:token>", views.sign_in_link, name="portal-sign-in-link"),
    path("inbox/sign-out", views.sign_out, name="portal-sign-out"),
    path("inbox/sign-out-everywhere", views.sign_out_everywhere, name="portal-sign-out-everywhere"),
    path("inbox/history", views.history, name="portal-history"),
    path("inbox/bulk", views.bulk_answer, name="portal-bulk"),
    path("inbox/away", views.away, name="portal-away"),
    path("inbox/passkeys", views.passkeys_page, name="portal-passkeys"),
    path("inbox/passkeys/options", views.passkey_registration_options, name="portal-passkey-options"),
    path("inbox/passkeys/register", views.passkey_register, name="portal-passkey-register"),
    path("inbox/passkeys/<int:passkey_id>/delete", views.passkey_delete, name="portal-passkey-delete"),
    path("inbox/<decision_id:decision_id>", views.decision_page, name="portal-decision"),
    path("inbox/<decision_id:decision_id>/answer", views.answer, name="portal-answer"),
    path(
        "inbox/<decision_id:decision_id>/passkey-options",
        views.passkey_answer_options,
        name="portal-passkey-answer-options",
    ),
]
