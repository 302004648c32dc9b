import time
from datetime import timedelta

from oauth2_provider.oauth2_validators import OAuth2Validator

from .models import ClientSetup, UserClaims


class ConfigurableValidator(OAuth2Validator):
    # Every claim below goes into the ID token, whatever the scopes.
    oidc_claim_scope = None

    def get_additional_claims(self, request):
        user = request.user
        claims = {
            "email": user.email,
            "email_verified": True,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
        extra = UserClaims.objects.filter(user=user).first()
        if extra is not None:
            claims.update(extra.claims)
        return claims

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        setup = ClientSetup.objects.filter(client_id=request.client_id).first()
        if setup is not None:
            if setup.issuer:
                claims["iss"] = setup.issuer
            if setup.audience:
                claims["aud"] = setup.audience
            if setup.clock_offset_seconds:
                # A provider whose clock is off stamps every time it writes with that clock.
                offset = setup.clock_offset_seconds
                claims["exp"] += offset
                claims["auth_time"] += offset
                claims["iat"] = int(time.time()) + offset
                expiration += timedelta(seconds=offset)
        return claims, expiration
