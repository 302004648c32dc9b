from django.urls import path

from . import views

# Mounted at /accounts/ by responseportal.urls.
urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("login/second-factor/", views.second_factor, name="sign_in_second_factor"),
    path(
        "login/second-factor/passkey/options/",
        views.second_factor_passkey_options,
        name="sign_in_passkey_options",
    ),
    path("login/second-factor/passkey/", views.second_factor_passkey, name="sign_in_passkey"),
    path("security/", views.security, name="security"),
    path("security/confirm/", views.security_confirm, name="security_confirm"),
    path("security/authenticator/", views.totp_setup, name="totp_setup"),
    path("security/authenticator/remove/", views.totp_remove, name="totp_remove"),
    path("security/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path(
        "security/passkeys/options/",
        views.passkey_register_options,
        name="passkey_register_options",
    ),
    path("security/passkeys/", views.passkey_register, name="passkey_register"),
    path("security/passkeys/<int:pk>/remove/", views.passkey_remove, name="passkey_remove"),
    path("step-up/passkey/options/", views.step_up_passkey_options, name="step_up_passkey_options"),
    path("step-up/passkey/", views.step_up_passkey, name="step_up_passkey"),
]
