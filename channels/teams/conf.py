"""Teams settings, read from the environment once at start-up (a bad URL stops it, naming the
variable). Django settings of the same name win, so tests point the endpoints at local fakes.

TEAMS_APP_ID, TEAMS_APP_PASSWORD   the bot's Microsoft App ID and client secret
TEAMS_TENANT_ID                    the Microsoft Entra tenant the bot posts into
TEAMS_SERVICE_URL                  the Bot Framework connector for Teams in your region
TEAMS_LOGIN_URL                    where the bot's token comes from (client credentials)
TEAMS_OPENID_METADATA_URL          the Bot Framework's OpenID metadata (its signing keys)
TEAMS_TOKEN_ISSUER                 the issuer of the tokens that sign inbound activities
"""

from django.conf import settings

from broker.env import env_str, env_url

_HTTP = {"http", "https"}

_FROM_ENVIRONMENT = {
    "TEAMS_APP_ID": env_str("TEAMS_APP_ID"),
    "TEAMS_APP_PASSWORD": env_str("TEAMS_APP_PASSWORD"),
    "TEAMS_TENANT_ID": env_str("TEAMS_TENANT_ID"),
    "TEAMS_SERVICE_URL": env_url("TEAMS_SERVICE_URL", "https://smba.trafficmanager.net/teams", schemes=_HTTP),
    # Multi-tenant bots; a single-tenant bot uses https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
    "TEAMS_LOGIN_URL": env_url(
        "TEAMS_LOGIN_URL",
        "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token",
        schemes=_HTTP,
    ),
    "TEAMS_OPENID_METADATA_URL": env_url(
        "TEAMS_OPENID_METADATA_URL",
        "https://login.botframework.com/v1/.well-known/openidconfiguration",
        schemes=_HTTP,
    ),
    "TEAMS_TOKEN_ISSUER": env_str("TEAMS_TOKEN_ISSUER", "https://api.botframework.com"),
}

# What the bot's token is for: calling the Bot Framework connector.
CONNECTOR_SCOPE = "https://api.botframework.com/.default"


def teams_setting(name: str) -> str:
    return getattr(settings, name, _FROM_ENVIRONMENT[name])
