"""What a password must be: long, and hard to guess — judged by zxcvbn, which knows common
passwords, words, names, keyboard patterns, repeats, sequences and dates, rather than by a
home-made list. A password must score 3 of 4 ("safely unguessable": about 10^8 guesses or
more); the account's own name does not count towards it. The rule is stated in one place,
:data:`PASSWORD_RULE`, which the README, prompts and refusals repeat.
"""

from __future__ import annotations

from collections.abc import Iterable

from openfrt.records.errors import InvalidRecordError

#: Shortest password accepted: length is what makes a password hard to guess.
MIN_PASSWORD_LENGTH = 12
#: Lowest zxcvbn score accepted (0 to 4).
MIN_SCORE = 3
#: zxcvbn looks at this many characters at most; a longer password is long enough.
SCORED_CHARACTERS = 72

PASSWORD_RULE = (
    f"A password needs at least {MIN_PASSWORD_LENGTH} characters and must be hard to guess: common passwords, "
    "words and names on their own, keyboard patterns, repeats and sequences are refused. "
    "A few unrelated words together work well."
)


def check_password(password: str, *, user_inputs: Iterable[str] = ()) -> None:
    """Refuse a password that breaks :data:`PASSWORD_RULE`, saying why (never repeating it)."""
    from zxcvbn import zxcvbn  # its word lists take a quarter of a second to load: only when a password is chosen

    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRecordError(f"{PASSWORD_RULE} This one is shorter than {MIN_PASSWORD_LENGTH} characters.")
    verdict = zxcvbn(password[:SCORED_CHARACTERS], user_inputs=[text for text in user_inputs if text])
    if verdict["score"] < MIN_SCORE:
        why = verdict["feedback"]["warning"] or "It would be guessed too easily."
        raise InvalidRecordError(f"{PASSWORD_RULE} This one is too easy to guess: {why[0].lower()}{why[1:].rstrip('.')}.")
