"""Microsoft Teams: an Adaptive Card per ask, answered with Universal Actions (`Action.Execute`).

The card goes out through the Bot Framework connector (connector.py); answers come back as
`invoke` activities to POST /teams/messages (views.py), verified by the Bot Framework's JWT
(auth.py). Approver addresses: `teams:29:…` or `teams:<AAD object id>` (a person, asked in a
1:1 chat with the bot) and `teams:19:…` (a channel or group chat, where anyone may answer).
"""
