"""vLLM server commands: read as inference configs and planned as weights + KV cache per GPU."""

from __future__ import annotations

from ask_oom.tools.configs import apply_config_to_setup, load_config, plan_fixes
from ask_oom.tools.configs.schema import Constraints
from ask_oom.tools.configs.vllm_plan import serving_size
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.training_setup import TrainingSetup


def _setup(text: str, gpu: str = "A100 80GB"):
    doc = load_config(text, "serve.sh")
    setup = apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu(gpu), "user", "--gpu")
    return doc, setup


def test_vllm_commands_are_recognised():
    doc = load_config("vllm serve Qwen/Qwen2.5-7B --max-model-len 8192\n", "serve.sh")
    assert doc.framework == "vllm" and doc.settings["model"] == "Qwen/Qwen2.5-7B"
    doc = load_config("CUDA_VISIBLE_DEVICES=0,1 python -m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-7B\n", "run.sh")
    assert doc.framework == "vllm" and doc.launcher["num_gpus"] == 2


def test_a_model_too_big_for_one_gpu_is_split_over_the_visible_ones():
    doc, setup = _setup("CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m vllm.entrypoints.openai.api_server \\\n"
                        "    --model Qwen/Qwen2.5-72B-Instruct\n")
    plan = plan_fixes(setup, doc, [], Constraints())
    assert plan.fits
    tp = next(c for c in plan.changes if c.key == "tensor-parallel-size")
    assert tp.to_value in (2, 4, 8) and tp.bytes_saved > 0
    size = serving_size(setup, tp.to_value, 0.9, 32768, 2)
    assert size.fits and size.weights_per_gpu * tp.to_value > 130 * 2**30   # 72.7B params in bf16 = 135 GiB
    assert "--tensor-parallel-size" in plan.fixed_config and plan.fixed_config.startswith("CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7")
    again = load_config(plan.fixed_config, "serve.sh")
    assert plan_fixes(setup, again, [], Constraints()).changes == []   # applying the plan to its output changes nothing


def test_one_gpu_caps_the_context_and_says_requests_are_cut():
    doc, setup = _setup("vllm serve Qwen/Qwen2.5-7B --max-model-len 131072 --gpu-memory-utilization 0.9\n", "RTX 4090")
    plan = plan_fixes(setup, doc, [], Constraints())
    keys = {c.key: c for c in plan.changes}
    assert plan.fits and keys["max-model-len"].to_value < 131072 and keys["max-model-len"].changes_results
    assert "--max-model-len 131072" not in plan.fixed_config


def test_nothing_fits_says_so():
    doc, setup = _setup("vllm serve Qwen/Qwen2.5-72B\n", "RTX 4090")
    plan = plan_fixes(setup, doc, [], Constraints(num_gpus=1))
    assert not plan.fits and any("nothing fits" in n for n in plan.notes)


def test_vllm_python_engine_call_is_read_and_fixed_in_place():
    from ask_oom.tools.configs import Constraints, apply_config_to_setup, load_config, plan_fixes
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.training_setup import TrainingSetup

    code = ('from vllm import LLM, SamplingParams\n'
            'llm = LLM(model="Qwen/Qwen2.5-72B", max_model_len=32768)\n'
            'out = llm.generate(prompts, SamplingParams(max_tokens=256))\n')
    doc = load_config(code, "serve.py")
    assert doc.framework == "vllm" and doc.settings["max_model_len"] == 32768
    setup = apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu("A100 80GB"), "user", "--gpu") \
        .with_fact("num_gpus", 4, "user", "--gpus 4")
    plan = plan_fixes(setup, doc, [], Constraints(num_gpus=4))
    assert plan.fits and 'LLM(model="Qwen/Qwen2.5-72B", max_model_len=32768, tensor_parallel_size=4)' in plan.fixed_config
