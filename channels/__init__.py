"""Custom Rasa channels of the appcare assistant.

``channels.whatsapp.WhatsAppInput`` connects Rasa to Meta's WhatsApp Business
Cloud API. The modules are split by concern:

* ``config``         - settings from the environment / credentials.yml
* ``webhook_parser`` - Meta webhook payloads -> typed events (no I/O)
* ``formatting``     - Rasa bot messages -> Graph API message bodies (no I/O)
* ``graph_api``      - the Graph API HTTP client (retries, pacing)
* ``inbox``          - persistent inbox/outbox: de-duplication, order, 24h window
* ``whatsapp``       - the Rasa input/output channel (a package: routes, service,
                       scheduling, turn, sending, output, settings)

Importing this package does not import Rasa.
"""
