"""Cut a document into information units: paragraphs split at sentence ends to a size cap."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class IU:
    doc: str
    index: int
    text: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.doc}\0{self.index}\0{self.text}".encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.text)


def normalise(text: str) -> str:
    """Collapse runs of spaces, strip each line, unify line endings."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_SPACES.sub(" ", line).strip() for line in lines).strip()


def _pieces(paragraph: str, cap: int) -> list[str]:
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > cap:
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:cap])
            sentence = sentence[cap:].lstrip()
        if not sentence:
            continue
        candidate = f"{current} {sentence}" if current else sentence
        if len(candidate) <= cap:
            current = candidate
        else:
            out.append(current)
            current = sentence
    if current:
        out.append(current)
    return out


def cut(doc: str, text: str, cap: int = 400) -> list[IU]:
    """Cut ``text`` (of document ``doc``) into IUs of at most ``cap`` characters."""
    if cap < 1:
        raise ValueError("cap must be positive")
    if not doc:
        raise ValueError("doc id must not be empty")
    paragraphs = [p for p in re.split(r"\n\s*\n", normalise(text)) if p.strip()]
    units: list[IU] = []
    for paragraph in paragraphs:
        for piece in _pieces(paragraph.replace("\n", " "), cap):
            units.append(IU(doc, len(units), piece))
    return units
