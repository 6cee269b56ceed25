"""The answer stage: a question answered from documents and datasets with citations (see ``compose``)."""

from ods.stages.answer.compose import answer_question
from ods.stages.answer.results import Answer, AnswerSource, SqlRun, answer_markdown

__all__ = ["Answer", "AnswerSource", "SqlRun", "answer_markdown", "answer_question"]
