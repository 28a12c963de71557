"""Language of a citizen's message (entity and slot ``language``, ISO 639-1).

py3langid does the identification, restricted to the languages citizens of Dutch
municipalities write in. The glue here is for WhatsApp chat, where messages are short
and mixed: a message with Dutch chat or municipal words is Dutch, very short or
ambiguous texts (emoji, "ok", "hi") count as Dutch, and a few greetings that are too
short for any statistical model ("merhaba", "hola") are looked up. py3langid has no
model for Somali and Tigrinya: Somali is recognised by its own chat words, Tigrinya
by the letters of Ge'ez script that Amharic does not use.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence, Tuple

DEFAULT = "nl"
LANGUAGES: Tuple[str, ...] = (
    "nl", "en", "de", "fr", "es", "it", "pt", "pl", "ro", "bg", "hu", "tr", "ar", "fa", "uk", "ru",
    "zh", "am", "so", "ti",
)
# Words that only a Dutch writer uses in a short chat message.
DUTCH_WORDS = frozenset("""
ik je jij jullie u uw het een niet wat hoe wanneer waar waarom welke welk kan kun kunnen mag moet
moeten wil wilt zou mijn mn m'n zijn ben bent heb hebt heeft graag bedankt dank hoi hallo hoii
doei dag ja nee jawel wel ook nog maar geen alvast even ff effe gewoon deze dit dat er naar bij
hier daar vandaag morgen overmorgen gesloten hoelaat laat tijd vraag vragen kost kosten ophalen
aanvragen afspraak maken moeten zijn zit zitten wij we ons onze hun zo nou oke oké toch dus heel
erg veel weet weten krijg krijgen kom komen gaat gaan doen wordt worden goedemorgen goedemiddag
goedenavond groetjes groet mvg alsjeblieft alstublieft aub svp wnr wrm idd tnx bedankt op mij
bel bellen terug mee nodig zeker sorry dankjewel dankuwel hee hey hoor hè
""".split())
MUNICIPAL_WORDS = frozenset("""
gemeente gemeentehuis stadhuis stadswinkel balie loket openingstijden openingstijd paspoort
paspoord pasport idkaart id-kaart identiteitskaart rijbewijs trouwen huwelijk partnerschap
wegwerkzaamheden werkzaamheden omleiding afgesloten afsluiting burgerzaken uittreksel verhuizen
verhuizing aangifte parkeren vergunning afval container medewerker klantcontactcentrum getuigen
""".split())
GREETINGS = {
    "merhaba": "tr", "selam": "tr", "selamlar": "tr", "günaydın": "tr", "iyi günler": "tr",
    "dzień dobry": "pl", "dzien dobry": "pl", "cześć": "pl", "czesc": "pl",
    "hola": "es", "buenos días": "es", "buenos dias": "es", "buenas": "es",
    "bonjour": "fr", "bonsoir": "fr", "salut": "fr",
    "guten tag": "de", "guten morgen": "de", "servus": "de",
    "ciao": "it", "buongiorno": "it", "olá": "pt", "bom dia": "pt",
    "bună ziua": "ro", "buna ziua": "ro", "bună": "ro",
    "iska warran": "so", "nabad": "so", "salaan": "so", "mahadsanid": "so",
}
SOMALI_WORDS = frozenset("""
waxaan waan maxaa iska warran fadlan mahadsanid rabaa doonayaa baasaboor baasaboorka xafiiska
caawin caawimaad sidee haye nabad salaan magaalada dowladda aqoonsi dukumiinti
""".split())
_URL = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_ARABIC = re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_ETHIOPIC = re.compile(r"[\u1200-\u139F\u2D80-\u2DDF]")
# Ge'ez letters of Tigrinya that Amharic does not write: ቐ-series and ኣ (glottal a).
_TIGRINYA = re.compile(r"[\u1250-\u125D\u12A3\u12B8-\u12BE\u12C0-\u12C5]")
_CJK = re.compile(r"[\u4E00-\u9FFF]")


class LanguageDetector:
    """Build once (loads the py3langid model), call ``detect`` per message."""

    def __init__(self, languages: Sequence[str] = LANGUAGES) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.languages = tuple(languages)
        self._identifier = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
        supported = [code for code in self.languages if code in self._identifier.nb_classes]
        if DEFAULT not in supported:
            supported.append(DEFAULT)
        self._identifier.set_languages(supported)
        for sample in ("Hoe laat is het stadhuis open?", "مرحبا", "Добрий день"):
            self._identifier.classify(sample)  # warm up the first call

    def detect(self, text: Optional[str], default: Optional[str] = DEFAULT) -> Optional[str]:
        """ISO 639-1 code of the message's language; ``default`` ("nl") when it cannot be
        told (emoji, "ok", a very short or ambiguous text)."""
        cleaned = (text or "")[:600]  # the start of a message tells its language
        if "@" in cleaned or "http" in cleaned or "www." in cleaned:
            cleaned = _URL.sub(" ", cleaned)
        letters = sum(1 for c in cleaned if c.isalpha())
        if letters < 2 or len({c.lower() for c in cleaned if c.isalpha()}) < 3:
            return default  # emoji, "ok", "xxxxxxx"
        if len(_ETHIOPIC.findall(cleaned)) * 2 >= letters:
            code = "ti" if _TIGRINYA.search(cleaned) else "am"
            return code if code in self.languages else default
        words = [w.lower() for w in _WORD.findall(cleaned)]
        phrase = " ".join(words)
        non_latin = len(_ARABIC.findall(cleaned)) + len(_CYRILLIC.findall(cleaned)) + len(_CJK.findall(cleaned))
        if non_latin * 2 < letters:
            greeting = self._greeting(phrase, words)
            if greeting:
                return greeting
            dutch = sum(1 for w in words if w in DUTCH_WORDS)
            municipal = sum(1 for w in words if w in MUNICIPAL_WORDS)
            if "so" in self.languages and not dutch and any(w in SOMALI_WORDS for w in words):
                return "so"
        else:
            dutch = municipal = 0
        code, probability = self._identifier.classify(cleaned)
        if code == DEFAULT:
            # A short message without one Dutch word ("a dla dziecka?") is no proof of
            # Dutch: the caller's default (the conversation's language) decides.
            if default != DEFAULT and non_latin * 2 < letters and not dutch and not municipal and len(words) <= 6:
                return default
            return DEFAULT
        if non_latin * 2 >= letters:
            return code  # Arabic, Persian, Ukrainian, Russian, Chinese: never Dutch chat
        if dutch >= 2 or (dutch + municipal >= 1 and (len(words) <= 4 or probability < 0.99)):
            return DEFAULT
        if letters < 6 or (len(words) <= 2 and probability < 0.99) or probability < 0.6:
            return default
        return code

    def _greeting(self, phrase: str, words: Sequence[str]) -> Optional[str]:
        if len(words) > 4:
            return None
        for greeting, code in GREETINGS.items():
            if (phrase == greeting or phrase.startswith(greeting + " ")) and code in self.languages:
                return code
        return None


def detect_all(texts: Iterable[str], detector: Optional[LanguageDetector] = None):
    """Convenience for scripts: (text, code) for each text."""
    detector = detector or LanguageDetector()
    return [(t, detector.detect(t)) for t in texts]
