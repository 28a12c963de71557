"""The channel's output channels: :class:`WhatsAppTurnCollector` collects a turn's
messages, :class:`WhatsAppOutput` sends straight away. Both turn Rasa's ``send_*``
calls into the same :class:`~channels.formatting.BotMessage`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Text

from rasa.core.channels.channel import OutputChannel

from channels import formatting
from channels.formatting import BotMessage
from channels.whatsapp.common import CHANNEL_NAME, REF_KWARG, split_conversation_id

if TYPE_CHECKING:
    from channels.whatsapp.service import WhatsAppService


class BotMessageOutput(OutputChannel):
    """Rasa's ``send_*`` calls, each as one :class:`BotMessage` handed to :meth:`_send`.
    Its name is ``whatsapp`` so channel-specific responses in the domain apply."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    async def _send(self, recipient_id: Text, message: BotMessage) -> Any:
        raise NotImplementedError

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("text", text=text or "", ref=kwargs.get(REF_KWARG)))

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self._send(
            recipient_id, BotMessage("buttons", text=text or "", buttons=list(buttons or []), ref=kwargs.get(REF_KWARG))
        )

    async def send_quick_replies(
        self, recipient_id: Text, text: Text, quick_replies: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("image", url=image, ref=kwargs.get(REF_KWARG)))

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("attachment", attachment=attachment, ref=kwargs.get(REF_KWARG)))

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("custom", custom=json_message, ref=kwargs.get(REF_KWARG)))


class WhatsAppTurnCollector(BotMessageOutput):
    """Collects the bot messages of one turn; they are merged and sent afterwards.
    Its name is ``whatsapp`` so channel-specific responses in the domain apply."""

    def __init__(self) -> None:
        self.messages: List[BotMessage] = []

    async def _send(self, recipient_id: Text, message: BotMessage) -> None:
        self.messages.append(message)


class WhatsAppOutput(BotMessageOutput):
    """Sends straight away (used by Rasa's HTTP API with ``output_channel=latest``,
    e.g. KCC staff replies, and by reminders). Every message gets an outbox
    record (status sent/failed/deferred + Meta's error code); send failures are
    logged and recorded, never raised."""

    def __init__(self, service: "WhatsAppService") -> None:
        self.service = service

    async def _send(self, recipient_id: Text, message: BotMessage) -> List[int]:
        wa_id, phone_number_id = split_conversation_id(str(recipient_id))
        payloads = formatting.message_payloads(wa_id, message)
        return await self.service.deliver(wa_id, payloads, ref=message.ref, phone_number_id=phone_number_id)
