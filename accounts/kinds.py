"""The kinds of second factor, as the audit log and the session name them."""

TOTP = "totp"
WEBAUTHN = "webauthn"
RECOVERY = "recovery"
# An identity provider's sign-in whose `amr` claim shows it asked for a second factor.
IDP = "idp"
KINDS = (TOTP, WEBAUTHN, RECOVERY, IDP)
