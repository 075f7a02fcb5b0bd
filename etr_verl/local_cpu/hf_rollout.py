"""A ``transformers``-based rollout replica (``actor_rollout_ref.rollout.name=hf``) for the CPU backend.

Three pieces, matching verl 0.9.1's server-mode rollout:

- :class:`HFGenerationServer`: a Ray actor holding a copy of the policy, answering verl's token-in/token-out
  ``generate`` with token ids and their log-probs (sampled at the requested temperature/top-p/top-k); the
  control calls (sleep, wake-up, abort, kv-cache) do nothing — there is no cache to manage.
- :class:`HFReplica`: verl's ``RolloutReplica`` that launches it (``RolloutReplicaRegistry``).
- :class:`HFServerAdapter`: the worker-side rollout (verl's rollout registry), which receives the actor's weights
  after each step (``checkpoint_engine.backend=naive``) and loads them into the server.

Requests are generated one at a time, unbatched: fine for a 100k-parameter model, not for anything real.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any, Generator, Optional

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"


def server_actor_name(replica_rank: int) -> str:
    return f"etr_hf_rollout_server_{replica_rank}"


class HFGenerationServer:
    """Generates with a local ``transformers`` causal LM. Runs as a Ray actor (async methods, one lock)."""

    def __init__(self, model_path: str, response_length: int, prompt_length: int, seed: int, replica_rank: int):
        from transformers import AutoModelForCausalLM, GenerationConfig

        torch.set_num_threads(1)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
        self.model.eval()
        self.eos_token_id = self.model.generation_config.eos_token_id
        self.pad_token_id = self.model.generation_config.pad_token_id
        self.generation_config = GenerationConfig.from_model_config(self.model.config)
        self.response_length = response_length
        self.prompt_length = prompt_length
        self.seed = seed + replica_rank
        self.global_steps: Optional[int] = None
        self.seen: dict[tuple, int] = {}
        self.lock = asyncio.Lock()

    async def generate(
        self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str, image_data=None,
        video_data=None, **_unused,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None:
            raise ValueError("the hf CPU rollout is text-only")
        async with self.lock:
            generator = self._generator(list(prompt_ids))
            token_ids, log_probs = self._sample(list(prompt_ids), dict(sampling_params), generator)
        stop = "completed"
        return TokenOutput(
            token_ids=token_ids, log_probs=log_probs, stop_reason=stop,
            extra_fields={"global_steps": self.global_steps},
        )

    def _generator(self, prompt_ids: list[int]) -> torch.Generator:
        """Seed each request from (seed, step, prompt, how many times this prompt was asked this step): the ``n``
        samples of a prompt are then the same set whatever order concurrent requests arrive in."""
        prompt_key = zlib.crc32(",".join(map(str, prompt_ids)).encode())
        key = (self.global_steps, prompt_key)
        occurrence = self.seen.get(key, 0)
        self.seen[key] = occurrence + 1
        return torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{key[0]}/{prompt_key}/{occurrence}".encode()))

    @torch.no_grad()
    def _sample(
        self, prompt_ids: list[int], params: dict[str, Any], generator: torch.Generator
    ) -> tuple[list[int], list[float]]:
        """Ancestral sampling with a KV cache; log-probs of the sampled tokens under the sampling distribution."""
        max_tokens = int(params.pop("max_tokens", params.pop("max_new_tokens", self.response_length)))
        max_tokens = max(1, min(max_tokens, self.response_length))
        temperature = float(params.get("temperature", 1.0) or 0.0)
        top_k = int(params.get("top_k", -1) or -1)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        past, tokens, log_probs = None, [], []
        for _ in range(max_tokens):
            out = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            if temperature <= 0:  # greedy (validation)
                token = int(logits.argmax())
                logp = torch.log_softmax(logits, -1)[token].item()
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                if top_p < 1.0:
                    sorted_logits, order = logits.sort(descending=True)
                    cumulative = sorted_logits.softmax(-1).cumsum(-1)
                    drop = cumulative - sorted_logits.softmax(-1) > top_p
                    logits[order[drop]] = float("-inf")
                logprobs_all = torch.log_softmax(logits, -1)
                token = int(torch.multinomial(logprobs_all.exp(), 1, generator=generator))
                logp = logprobs_all[token].item()
            tokens.append(token)
            log_probs.append(logp)
            if token == self.eos_token_id:
                break
            input_ids = torch.tensor([[token]], dtype=torch.long)
        return tokens, log_probs

    async def load_weights(self, state_dict: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> int:
        async with self.lock:
            own = self.model.state_dict()
            unknown = sorted(set(state_dict) - set(own))
            if unknown:
                raise KeyError(f"hf rollout received weights it does not have: {unknown[:5]}")
            self.model.load_state_dict(state_dict, strict=False)
            if global_steps is not None:
                self.global_steps = global_steps
            self.seen.clear()
        return len(state_dict)

    async def wake_up(self):
        return None

    async def sleep(self):
        return None

    async def abort_all_requests(self, reject_request: bool = False):
        return None

    async def resume_generation(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFReplica(RolloutReplica):
    """verl ``RolloutReplica`` running one :class:`HFGenerationServer` (no GPU, no HTTP server)."""

    async def launch_servers(self):
        name = server_actor_name(self.replica_rank)
        server = (
            ray.remote(HFGenerationServer)
            .options(name=name, num_cpus=0.1, max_concurrency=self.max_concurrency, get_if_exists=False)
            .remote(
                model_path=self.model_config.get("local_path", None) or self.model_config.get("path"),
                response_length=self.config.response_length,
                prompt_length=self.config.prompt_length,
                seed=self.config.get("seed", 0) or 0,
                replica_rank=self.replica_rank,
            )
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-local-{self.replica_rank}"

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFServerAdapter(BaseRollout):
    """Worker-side half of the ``hf`` rollout: pushes the actor's full weights to the replica's server."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        self.replica_rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self._server = None

    def _handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self, weights: Generator[tuple[str, torch.Tensor], None, None], wire_format: str = "named_tensors", **kwargs
    ):
        if wire_format != "named_tensors":
            raise ValueError(f"hf rollout supports wire_format='named_tensors' only, got {wire_format!r}")
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu", copy=True)
        await self._handle().load_weights.remote(state, kwargs.get("global_steps"))
