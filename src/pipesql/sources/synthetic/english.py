"""Just enough English morphology to let templates phrase questions over any schema."""

from __future__ import annotations

from collections.abc import Sequence

_IRREGULAR_SINGULAR = {"are": "is", "have": "has", "were": "was", "do": "does"}
_PAST_TENSE = {"took", "bought", "saw", "flew", "was", "had", "did", "can"}  # agree already


def plural(noun: str) -> str:
    """`city` -> `cities`, `status` -> `statuses`, `name` -> `names` (last word only)."""
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def singular_verb(phrase: str) -> str:
    """Agree a plural verb phrase with a singular subject: `earn more` -> `earns more`."""
    verb, _, rest = phrase.partition(" ")
    if verb in _IRREGULAR_SINGULAR:
        verb = _IRREGULAR_SINGULAR[verb]
    elif verb.endswith(("s", "x", "ch", "sh", "o")):
        verb += "es"
    elif verb.endswith("y") and verb[-2:-1] not in tuple("aeiou"):
        verb = verb[:-1] + "ies"
    elif not (verb.endswith("ed") or verb in _PAST_TENSE):  # `performed in` agrees already
        verb += "s"
    return f"{verb} {rest}" if rest else verb


def article(noun: str) -> str:
    """`a salary`, `an age`; initialisms like `GPA` take `a`."""
    vowel = noun[:1].lower() in "aeiou" and not noun[:2].isupper()
    return f"{'an' if vowel else 'a'} {noun}"


def join_words(words: Sequence[str], conjunction: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"
