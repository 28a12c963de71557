"""Names of the custom actions that other parts refer to by name: the dialogue policy
(appcare.plugins.handoff_policy), the monthly report (report.metrics) and the actions
themselves (``NAME`` of the classes in actions/). domain/ lists the same names for Rasa.
"""

CLARIFY_ACTION = "action_clarify"
HANDOFF_ACTION = "action_handoff_to_kcc"
RELAY_ACTION = "action_relay_to_kcc"
RETURN_ACTION = "action_return_to_bot"
DELIVER_STAFF_REPLY_ACTION = "action_deliver_staff_reply"
CLOSE_HANDOFF_ACTION = "action_close_handoff"
