"""Property tests (hypothesis): edits re-parse, untouched keys and comments survive, the effective batch
is kept whenever the batch is lowered, and the planner leaves its own fitting output alone."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ask_oom.tools.configs import ConfigChange, Constraints, apply_changes, apply_config_to_setup, load_config, plan_fixes
from ask_oom.tools.root_causes import rank_root_causes
from ask_oom.tools.configs.validation import RULES
from ask_oom.tools.configs.yaml_doc import read_yaml
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.training_setup import TrainingSetup

# keys with a value rule (batch sizes, ranks, lengths) are left out: an impossible value there is an error by design
# (tests/tools/test_configs_mapping.py), and these properties are about edits of any other key
KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True).filter(
    lambda k: k not in ("true", "false", "null", "yes", "no", "on", "off") and k not in RULES)
WORDS = st.from_regex(r"[A-Za-z][A-Za-z0-9_./-]{0,12}", fullmatch=True).filter(
    lambda w: w.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "nan", "inf", "infinity") and not w.replace(".", "").isdigit())
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.booleans(), WORDS, st.sampled_from([1.0e-4, 0.5, 2e-05]))
COMMENTS = st.from_regex(r"[ A-Za-z0-9,.()-]{0,20}", fullmatch=True)


def _yaml_line(key, value, style, comment):
    if isinstance(value, bool):
        literal = "true" if value else "false"
    elif isinstance(value, str):
        literal = {"plain": value, "single": f"'{value}'", "double": f'"{value}"'}[style]
    else:
        literal = repr(value)
    return f"{key}: {literal}" + (f"  # {comment}" if comment is not None else "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.dictionaries(KEYS, st.tuples(SCALARS, st.sampled_from(["plain", "single", "double"]), st.none() | COMMENTS),
                          min_size=1, max_size=12),
    header=st.none() | COMMENTS,
    crlf=st.booleans(),
    data=st.data(),
)
def test_yaml_edits_reparse_and_keep_everything_else(items, header, crlf, data):
    lines = ([f"# {header}"] if header is not None else []) + [_yaml_line(k, *v) for k, v in items.items()]
    nl = "\r\n" if crlf else "\n"
    text = nl.join(lines) + nl
    original = read_yaml(text)
    keys = sorted(items)
    changed = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    added = data.draw(st.lists(KEYS.filter(lambda k: k not in items), unique=True, max_size=3))
    updates = {k: data.draw(SCALARS) for k in changed + added}
    doc = load_config(text, "cfg.yaml")
    new, ds = apply_changes(doc, [ConfigChange(key=k, to_value=v) for k, v in updates.items()])
    assert ds is None
    parsed = read_yaml(new)
    for k, v in updates.items():
        assert parsed[k] == v
    for k in keys:
        if k not in updates:
            assert parsed[k] == original[k]
    for line in lines:            # comments survive, and so does every untouched line, verbatim
        key = line.split(":", 1)[0]
        if line.startswith("#") or key not in updates:
            assert line in new.splitlines()
    if not updates:
        assert new == text
    assert new.count("\n") == new.count("\r\n") if crlf else "\r" not in new


FLAG_VALUES = st.one_of(st.integers(0, 10**5), st.sampled_from(["True", "False"]), WORDS)


@settings(max_examples=60, deadline=None)
@given(
    flags=st.dictionaries(KEYS, FLAG_VALUES, min_size=1, max_size=10),
    launcher=st.sampled_from(["deepspeed train.py", "torchrun --nproc_per_node=4 train.py", "python train.py",
                              "accelerate launch --num_processes 2 train.py"]),
    multiline=st.booleans(),
    indent=st.sampled_from(["  ", "    ", "\t"]),
    crlf=st.booleans(),
    data=st.data(),
)
def test_shell_edits_reparse_and_keep_the_rest(flags, launcher, multiline, indent, crlf, data):
    nl = "\r\n" if crlf else "\n"
    sep = f" \\{nl}{indent}" if multiline else " "
    command = launcher + "".join(f"{sep}--{k} {v}" for k, v in flags.items())
    text = f"#!/bin/bash{nl}export WANDB_MODE=offline{nl}{command}{nl}echo finished{nl}"
    doc = load_config(text, "run.sh")
    keys = sorted(flags)
    changed = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    added = data.draw(st.lists(KEYS.filter(lambda k: k not in flags), unique=True, max_size=3))
    updates = {k: data.draw(st.integers(1, 4096)) for k in changed + added}
    new, _ = apply_changes(doc, [ConfigChange(key=k, to_value=v) for k, v in updates.items()])
    again = load_config(new, "run.sh")
    for k, v in updates.items():
        assert again.settings[k] == v
    for k in keys:
        if k not in updates:
            assert again.settings[k] == doc.settings[k]
    assert new.startswith(f"#!/bin/bash{nl}export WANDB_MODE=offline{nl}") and new.endswith(f"{nl}echo finished{nl}")
    assert new.count("\n") == new.count("\r\n") if crlf else "\r" not in new
    assert again.launcher["program"] == doc.launcher["program"]


JSON_VALUES = st.recursive(st.one_of(st.integers(-1000, 1000), st.booleans(), st.none(), WORDS),
                           lambda inner: st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(KEYS, JSON_VALUES, min_size=1, max_size=6), indent=st.sampled_from([2, 4]), data=st.data())
def test_json_edits_reparse_and_match_the_intended_object(body, indent, data):
    body = {"zero_optimization": {"stage": 2}, **body}
    text = json.dumps(body, indent=indent) + "\n"
    path = data.draw(st.sampled_from([("zero_optimization", "stage"), ("zero_optimization", "offload_optimizer", "device"),
                                      ("new_section", "value")] + [(k,) for k in body]))
    value = data.draw(st.integers(0, 3) | WORDS)
    doc = load_config(text, "ds.json")
    new, _ = apply_changes(doc, [ConfigChange(key=".".join(path), to_value=value, target="deepspeed")])
    expected = json.loads(text)
    node = expected
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[path[-1]] = value
    assert json.loads(new) == expected


MODELS = ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-7B", "meta-llama/Llama-2-13b-hf", "Qwen/Qwen2.5-VL-7B-Instruct", "google/gemma-2-9b"]
GPUS = ["4090", "A100 40GB", "A100 80GB", "H100"]


def _config_text(fmt: str, model: str, method: str, micro: int, accum: int, seq: int, gc_off: bool) -> tuple[str, str]:
    """The same training in three formats: LLaMA-Factory YAML, HF TrainingArguments JSON, a deepspeed script."""
    if fmt == "yaml":
        return "train.yaml", (
            f"### model\nmodel_name_or_path: {model}\n\n### method\nstage: sft\nfinetuning_type: {method}\n"
            f"disable_gradient_checkpointing: {'true' if gc_off else 'false'}\n\n### dataset\ncutoff_len: {seq}  # tokens\n\n"
            f"### train\nper_device_train_batch_size: {micro}\ngradient_accumulation_steps: {accum}\nbf16: true\n")
    if fmt == "json":
        body = {"model_name_or_path": model, "output_dir": "out", "use_peft": method == "lora", "max_seq_length": seq,
                "gradient_checkpointing": not gc_off, "per_device_train_batch_size": micro,
                "gradient_accumulation_steps": accum, "bf16": True}
        return "args.json", json.dumps(body, indent=2) + "\n"
    return "finetune.sh", (
        "#!/bin/bash\n# LLaVA-style launch\ndeepspeed llava/train/train.py \\\n"
        f"    --model_name_or_path {model} \\\n    --lora_enable {method == 'lora'} \\\n"
        f"    --model_max_length {seq} \\\n    --gradient_checkpointing {not gc_off} \\\n"
        f"    --per_device_train_batch_size {micro} \\\n    --gradient_accumulation_steps {accum} \\\n"
        "    --bf16 True \\\n    --output_dir ./checkpoints/run\n")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), method=st.sampled_from(["full", "lora"]),
       micro=st.sampled_from([1, 2, 3, 4, 6, 8, 16]), accum=st.integers(1, 8), seq=st.sampled_from([512, 1024, 2048, 4096, 8192, 16384]),
       gc_off=st.booleans(), gpus=st.sampled_from([1, 2, 4, 8]), fmt=st.sampled_from(["yaml", "json", "shell"]))
def test_planner_keeps_effective_batch_and_is_stable_on_its_output(model, gpu, method, micro, accum, seq, gc_off, gpus, fmt):
    name, text = _config_text(fmt, model, method, micro, accum, seq, gc_off)
    doc = load_config(text, name)
    base = TrainingSetup().model_copy(update={"gpu": lookup_gpu(gpu), "num_gpus": gpus})
    setup = apply_config_to_setup(doc, base)
    assert (setup.micro_batch, setup.grad_accum, setup.seq_len, setup.method) == (micro, accum, seq, method)
    causes = rank_root_causes(None, setup, estimate_memory(setup))
    plan = plan_fixes(setup, doc, causes, Constraints())
    assert plan.fixed_config is not None
    new_ds = {c.to_value: plan.fixed_deepspeed for c in plan.changes if c.key == "deepspeed"} if plan.fixed_deepspeed else None
    fixed = load_config(plan.fixed_config, name, new_ds)          # the output re-parses (with the DeepSpeed file it names)
    s = fixed.settings
    if s["per_device_train_batch_size"] != micro:
        assert s["per_device_train_batch_size"] < micro
        assert s["per_device_train_batch_size"] * s["gradient_accumulation_steps"] == micro * accum
    for line in text.splitlines():                                 # untouched lines (comments included) survive
        key = line.strip().lstrip("-").split(":")[0].split(" ")[0].strip('"')
        if not any(c.key == key for c in plan.changes) and line.strip().startswith(("#", "###")):
            assert line in plan.fixed_config.splitlines()
    # a change the file cannot hold (an action such as loading the model with another attention) is sized but not written
    in_code = any(c.key is None and c.target == "config" for c in plan.changes)
    if plan.fits and not in_code:
        again_setup = apply_config_to_setup(fixed, base)
        # the written config is exactly the setup the plan sized (no edit lost, none extra)
        assert estimate_memory(again_setup).peak_bytes == plan.estimate_after.peak_bytes
        again = plan_fixes(again_setup, fixed, rank_root_causes(None, again_setup, estimate_memory(again_setup)), Constraints())
        assert again.fits and [c for c in again.changes if c.key] == []
        assert again.fixed_config == plan.fixed_config


LABELS = st.sampled_from(sorted(__import__("ask_oom.tools.labels", fromlist=["ROOT_CAUSES"]).ROOT_CAUSES))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS + [None]), gpu=st.sampled_from(GPUS + ["V100 16GB", None]),
       method=st.sampled_from(["full", "freeze", "lora", "qlora"]), zero=st.integers(0, 3), off=st.booleans(),
       micro=st.integers(1, 32), accum=st.integers(1, 16), seq=st.integers(1, 65536), gpus=st.integers(1, 16),
       attn=st.sampled_from(["eager", "sdpa", "flash_attention_2"]), precision=st.sampled_from(["bf16_mixed", "fp16_mixed", "pure_bf16", "fp32"]),
       eval_batch=st.none() | st.integers(1, 64), causes=st.lists(st.tuples(LABELS, st.floats(0, 1)), max_size=4),
       keep=st.sets(st.sampled_from(["keep_method", "keep_seq_len", "no_deepspeed", "keep_batch"])),
       observed=st.none() | st.integers(1, 200 * 2**30))
def test_planner_never_raises_and_keeps_its_promises(model, gpu, method, zero, off, micro, accum, seq, gpus, attn, precision,
                                                      eval_batch, causes, keep, observed):
    from ask_oom.tools.labels import RootCause
    from ask_oom.tools.memory import resolve_model

    setup = TrainingSetup(method=method, zero_stage=zero, offload_optimizer=off and zero >= 2, micro_batch=micro, grad_accum=accum,
                          seq_len=seq, num_gpus=gpus, attn_implementation=attn, precision=precision, eval_batch=eval_batch,
                          quantization_bit=4 if method == "qlora" else None)
    setup = setup.model_copy(update={"model": resolve_model(model) if model else None, "gpu": lookup_gpu(gpu) if gpu else None})
    ranked = [RootCause(label=label, score=score) for label, score in sorted(causes, key=lambda x: -x[1])]
    constraints = Constraints(**{k: True for k in keep}, observed_peak_bytes=observed)
    plan = plan_fixes(setup, None, ranked, constraints)
    keys = {c.key: c for c in plan.changes if c.key}
    if "per_device_train_batch_size" in keys:
        m, a = keys["per_device_train_batch_size"].to_value, keys["gradient_accumulation_steps"].to_value
        assert m * a == micro * accum and m < micro
    if "keep_method" in keep:
        assert not any(c.tier == 6 and c.key for c in plan.changes)
    if "keep_seq_len" in keep:
        assert not any(c.tier == 5 for c in plan.changes)
    if "no_deepspeed" in keep:
        assert not any(c.target == "deepspeed" for c in plan.changes)
    if plan.estimate_before is None:
        assert any("unverified" in n for n in plan.notes)
    elif not plan.fits:
        assert any(n.startswith("nothing fits") for n in plan.notes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=400), st.text(alphabet=st.sampled_from(list("{}[]:,-'\"&*!|>#%@` \n\t\\$=abc12.")), max_size=300)),
       name=st.sampled_from(["c.yaml", "c.json", "run.sh", "config"]))
def test_any_text_loads_or_fails_with_a_one_line_input_error(text, name):
    from ask_oom.tools.errors import InputError

    try:
        doc = load_config(text, name)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    new, _ = apply_changes(doc, [])
    assert new == text
