"""The vocabulary of a chat with a language model, shared by the LLM adapters and the answer logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One message sent to or received from a chat model."""

    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """Tokens a completion consumed, as the model counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """A finished chat completion: the text, which model wrote it, what it cost and how long it took."""

    text: str
    model: str
    usage: Usage
    seconds: float
    finish_reason: str | None = None
