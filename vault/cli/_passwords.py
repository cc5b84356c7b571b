"""Generated passwords (``generate``, ``create --generate``) and a passphrase strength estimate (``init``).

Generation draws every character from the OS's random source (:mod:`secrets`), uniformly from
the alphabet, and redraws the whole password until every character class appears, so each
accepted password is equally likely. The symbols leave out quotes, the backslash, the backtick
and space, so a generated value can be pasted into a shell, a ``.env`` line or JSON as it is.

The estimate is a guesser's view rather than a length check, in the spirit of zxcvbn without
its dictionaries: a passphrase that is a common password (after undoing leetspeak and dropping
digits and symbols stuck on either end) is worth the bits of its rank in that list; otherwise
each character is worth log2 of its class's alphabet, a run of one repeated character or a
keyboard/alphabet sequence counts as one character plus log2 of its length, and a single
dictionary-shaped word (letters only) is capped. It errs on the side of warning.
"""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_LENGTH",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "WEAK_BITS",
    "Strength",
    "estimate",
    "generate_password",
    "generated_bits",
]

DEFAULT_LENGTH: Final = 24
MIN_LENGTH: Final = 8
MAX_LENGTH: Final = 1024
#: Below this many bits, init and passwd warn. An attacker with the vault file runs Argon2id for
#: every guess, but a list of likely passphrases goes fast: 50 bits is ~10^15 guesses.
WEAK_BITS: Final = 50.0

SYMBOLS: Final = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
_CLASSES: Final = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def generate_password(length: int = DEFAULT_LENGTH, *, symbols: bool = True) -> str:
    """A random password of ``length`` characters with a lower- and upper-case letter, a digit and (unless
    ``symbols=False``) a symbol."""
    classes = (*_CLASSES, SYMBOLS) if symbols else _CLASSES
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"length must be from {MIN_LENGTH} to {MAX_LENGTH}")
    alphabet = "".join(classes)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(ch in group for ch in password) for group in classes):
            return password


def generated_bits(length: int, *, symbols: bool = True) -> float:
    """About the entropy of :func:`generate_password`: ``length * log2(alphabet)``, rounded down (the rule that
    every class appears removes well under one bit at length 8 and more)."""
    size = sum(len(c) for c in (*_CLASSES, SYMBOLS)) if symbols else sum(len(c) for c in _CLASSES)
    return float(math.floor(length * math.log2(size)))


# --- strength --------------------------------------------------------------------------------

#: The most common passwords and base words, most common first (rank -> bits). Lower case,
#: leetspeak undone; digits and symbols around them are stripped before the lookup.
_COMMON_TEXT: Final = """
    password qwerty abc iloveyou admin welcome monkey dragon letmein football baseball master
    sunshine princess shadow superman trustno michael login starwars whatever freedom hello
    secret charlie donald passw qazwsx mustang access batman jordan hunter ranger buster soccer
    harley andrew tigger joshua pepper ginger summer winter spring autumn flower hockey killer
    george computer michelle jessica pass test guest root user changeme default vault chatbotkit
    cbkvault openai matrix cheese internet service samsung blink lovely maggie ashley nicole
    daniel thomas robert hannah jennifer thunder taylor liverpool chelsea arsenal orange banana
    purple yellow silver golden diamond angel loveme friend family forever cookie chocolate
    biteme zxcvbn asdfgh azerty qwertz mypass mypassword passphrase trustnoone iloveu
    whatsup nothing anything someone
"""
_COMMON: Final = tuple(_COMMON_TEXT.split())
_COMMON_RANK: Final = {word: rank for rank, word in enumerate(_COMMON, 1)}
_LEET: Final = str.maketrans({"@": "a", "4": "a", "8": "b", "3": "e", "6": "g", "1": "i", "!": "i", "0": "o",
                              "5": "s", "$": "s", "7": "t", "+": "t", "2": "z"})
_ROWS: Final = ("qwertyuiopasdfghjklzxcvbnm", "abcdefghijklmnopqrstuvwxyz", "01234567890", "1qaz2wsx3edc4rfv")


@dataclass(frozen=True)
class Strength:
    """An estimate: ``bits`` of guessing work, and why it is low (empty when it is not)."""

    bits: float
    reason: str = ""

    @property
    def weak(self) -> bool:
        """Whether init and passwd warn about it."""
        return self.bits < WEAK_BITS


def _pool(ch: str) -> int:
    if ch in string.ascii_lowercase or ch in string.ascii_uppercase:
        return 26
    if ch in string.digits:
        return 10
    if ch in string.punctuation or ch == " ":
        return 33
    return 100  # anything else: a large alphabet, but not a free lunch


def _in_sequence(a: str, b: str) -> bool:
    pair = (a + b).lower()
    return any(pair in row or pair[::-1] in row for row in _ROWS)


def _pattern_bits(text: str) -> float:
    """Per-character bits, with repeated characters and sequences (abcd, 4321, qwerty) counted as one."""
    classes = {_pool(ch) for ch in text}
    # The guesser knows which classes appear, not where: the alphabet is their union.
    per_char = math.log2(sum(classes))
    bits = 0.0
    run = 1
    for i, ch in enumerate(text):
        if i and (ch == text[i - 1] or _in_sequence(text[i - 1], ch)):
            run += 1
            continue
        if run > 1:
            bits += math.log2(run)
        bits += per_char
        run = 1
    if run > 1:
        bits += math.log2(run)
    return bits


def estimate(passphrase: str) -> Strength:
    """How many guesses, in bits, a guesser who knows common passwords and patterns would need."""
    if not passphrase:
        return Strength(0.0, "it is empty")
    lowered = passphrase.lower()
    core = lowered.strip(string.digits + string.punctuation + " ")
    decorated = len(passphrase) - len(core)
    for candidate in (core, core.translate(_LEET), lowered.translate(_LEET).strip(string.digits + string.punctuation)):
        rank = _COMMON_RANK.get(candidate)
        if rank is not None:
            # The rank in the list, plus a little for the digits or symbols added around it.
            bits = math.log2(rank + 1) + decorated * math.log2(10) + (1 if candidate != core else 0)
            return Strength(bits, "it is a common password" + (" with a few characters added" if decorated else ""))
    bits = _pattern_bits(passphrase)
    if core.isalpha() and core.isascii() and decorated <= 4 and " " not in core:
        # One word, perhaps capitalised and with a year on the end: a dictionary attack's first pass.
        word_bits = 17.0 + decorated * math.log2(10) + (1 if passphrase[:1].isupper() else 0)
        if word_bits < bits:
            added = " with a few characters added" if decorated else ""
            return Strength(word_bits, "it looks like a single word" + added)
    if bits < WEAK_BITS:
        return Strength(bits, "it is short, or made of repeats and sequences")
    return Strength(bits)
