"""Python snippets as configs: keyword literals read with ast (never executed) and edited in place."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import ConfigChange, apply_changes, apply_config_to_setup, load_config
from ask_oom.tools.configs.python_doc import find_calls, set_python_values
from ask_oom.tools.errors import InputError
from ask_oom.tools.training_setup import TrainingSetup

SCRIPT = '''from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TrainingArguments
model_id = "meta-llama/Llama-2-7b-hf"
bnb = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_compute_dtype=torch.bfloat16,  # compute in bf16
)
model = AutoModelForCausalLM.from_pretrained(model_id, quantization_config=bnb, device_map="auto")
peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])
args = TrainingArguments(
    output_dir="out",
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,
    bf16=True,
)
'''


def test_reads_literal_keywords_and_the_model_behind_a_variable():
    doc = load_config(SCRIPT, "train.py")
    assert doc.format == "python" and doc.framework == "hf_trainer"
    s = doc.settings
    assert s["model_name_or_path"] == "meta-llama/Llama-2-7b-hf"
    assert s["per_device_train_batch_size"] == 8 and s["load_in_4bit"] is True and s["r"] == 16
    assert s["bnb_4bit_compute_dtype"] == "torch.bfloat16"          # a dotted name is kept as text, not evaluated
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.method == "qlora" and setup.lora_rank == 16 and setup.micro_batch == 8
    assert setup.model is not None and setup.model.name == "meta-llama/Llama-2-7b-hf"


def test_edits_replace_only_the_literal_and_insert_into_the_right_call():
    doc = load_config(SCRIPT, "train.py")
    changes = [ConfigChange(key="per_device_train_batch_size", from_value=8, to_value=2),
               ConfigChange(key="gradient_accumulation_steps", from_value=2, to_value=8),
               ConfigChange(key="gradient_checkpointing", from_value=None, to_value=True)]
    new, ds = apply_changes(doc, changes)
    assert ds is None
    again = load_config(new, "train.py").settings
    assert again["per_device_train_batch_size"] == 2 and again["gradient_accumulation_steps"] == 8
    assert again["gradient_checkpointing"] is True
    assert "    bf16=True,\n    gradient_checkpointing=True,\n)" in new      # the call's own layout
    assert new.replace("per_device_train_batch_size=2", "per_device_train_batch_size=8").replace(
        "gradient_accumulation_steps=8", "gradient_accumulation_steps=2").replace("    gradient_checkpointing=True,\n", "") == SCRIPT
    assert apply_changes(doc, [])[0] == SCRIPT


def test_string_edit_keeps_the_quote_style():
    text = "m = AutoModelForCausalLM.from_pretrained('x/y', attn_implementation='eager')\n"
    assert set_python_values(text, {"attn_implementation": "sdpa"}) == text.replace("'eager'", "'sdpa'")
    text = "m = AutoModelForCausalLM.from_pretrained('x/y')\n"
    assert set_python_values(text, {"attn_implementation": "sdpa"}) == "m = AutoModelForCausalLM.from_pretrained('x/y', attn_implementation=\"sdpa\")\n"


def test_pasted_snippet_with_elisions_still_reads():
    """Issue pastes elide arguments ("[...]") and are not valid Python as a whole; each argument is read alone."""
    text = ('model, tok = FastVisionModel.from_pretrained(\n    "unsloth/Qwen2-VL-7B-Instruct-bnb-4bit",\n'
            '    load_in_4bit=True,\n    use_gradient_checkpointing="unsloth",\n)\n'
            'model = FastVisionModel.get_peft_model(\n    model,\n    finetune_vision_layers=True,\n    [...]\n)\n')
    doc = load_config(text, "train.yaml")          # not a YAML mapping: read as Python
    assert doc.format == "python" and doc.framework == "unsloth"
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.gradient_checkpointing is True and setup.freeze_vision_tower is False
    assert setup.method == "qlora"
    new, _ = apply_changes(doc, [ConfigChange(key="finetune_vision_layers", from_value=True, to_value=False)])
    assert new == text.replace("finetune_vision_layers=True", "finetune_vision_layers=False")


def test_code_is_never_executed():
    text = "args = TrainingArguments(per_device_train_batch_size=__import__('os').system('echo pwned'), bf16=True)\n"
    doc = load_config(text, "train.py")
    assert "per_device_train_batch_size" not in doc.settings and doc.settings["bf16"] is True


def test_no_configuring_call_is_a_clear_error():
    with pytest.raises(InputError, match="no TrainingArguments"):
        load_config("print('hello')\n", "train.py")
    with pytest.raises(InputError):
        load_config("just some words: [unbalanced\n", "train.yaml")


def test_nested_and_multiline_strings_do_not_confuse_the_scanner():
    text = 'a = TrainingArguments(output_dir="a,b)(", run_name="""x)\ny""", per_device_train_batch_size=4)  # )\n'
    (call,) = find_calls(text)
    assert {k.name: k.value for k in call.kwargs} == {"output_dir": "a,b)(", "run_name": "x)\ny", "per_device_train_batch_size": 4}


def test_llamafactorys_argument_dict_reads_as_its_config_and_takes_new_keys():
    """`run_exp(dict(stage="sft", ...))` / `args = dict(...)`: LLaMA-Factory's Python entry, its keys as settings."""
    text = ('args = dict(\n  stage="sft",\n  model_name_or_path="llama3 8B",\n  finetuning_type="lora",\n'
            '  per_device_train_batch_size=2,\n  fp16=True,\n  cutoff_len=8192,\n)\n')
    for name in ("train.py", "pasted_config.yaml"):        # by its name, or as YAML that turns out to be Python
        doc = load_config(text, name)
        assert doc.format == "python" and doc.framework == "llamafactory"
        assert doc.settings["cutoff_len"] == 8192 and doc.settings["finetuning_type"] == "lora"
    setup = apply_config_to_setup(load_config(text, "train.py"), TrainingSetup())
    assert setup.method == "lora" and setup.micro_batch == 2 and setup.seq_len == 8192
    edited = set_python_values(text, {"cutoff_len": 4096, "gradient_checkpointing": True})
    assert "cutoff_len=4096" in edited and "gradient_checkpointing=True" in edited
    assert load_config(edited, "train.py").settings["gradient_checkpointing"] is True


def test_a_paste_cut_inside_a_call_reads_the_arguments_it_shows_and_adds_nothing_there():
    text = ('args = TrainingArguments(output_dir="o", per_device_train_batch_size=4)\n'
            'peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM,\n    inference_mode=False,\n    r=12,\n    lora_al')
    doc = load_config(text, "train.py")
    assert doc.settings["r"] == 12 and doc.settings["per_device_train_batch_size"] == 4
    assert apply_config_to_setup(doc, TrainingSetup()).method == "lora"
    edited = set_python_values(text, {"r": 8})
    assert "r=12" not in edited and "r=8," in edited and edited.endswith("lora_al")   # in place; the tail stays
    with pytest.raises(InputError, match="lora_dropout"):     # a new key has no call that ends in the paste
        set_python_values(text, {"lora_dropout": 0.1})


@pytest.mark.parametrize("dtype, flag, precision", [
    ("torch.bfloat16", "", "pure_bf16"), ("torch.float16", "bf16=True, ", "pure_bf16"),   # 16-bit load stays 16-bit
    ("torch.float32", "", "fp32"), ('"auto"', "bf16=True, ", "bf16_mixed"),               # auto: the checkpoint decides
])
def test_the_dtype_the_weights_are_loaded_in_sets_the_precision(dtype, flag, precision):
    """from_pretrained(torch_dtype=...) decides the weights' width: the HF Trainer never upcasts 16-bit parameters,
    so their gradients and Adam moments are 16-bit too (the calculator's pure 16-bit precision)."""
    text = (f'model = AutoModelForCausalLM.from_pretrained("meta-llama/Llama-2-7b-hf", torch_dtype={dtype})\n'
            f'args = TrainingArguments(output_dir="o", {flag}per_device_train_batch_size=1)\n')
    setup = apply_config_to_setup(load_config(text, "train.py"), TrainingSetup())
    assert setup.precision == precision


@pytest.mark.parametrize("value, precision", [
    ("bf16-true", "pure_bf16"), ("16-true", "pure_bf16"), ("bf16-mixed", "bf16_mixed"), ("16-mixed", "fp16_mixed"),
    ("32-true", "fp32"), ("bf16", "bf16_mixed"),
])
def test_lightning_precision_flag_sets_the_precision(value, precision):
    """Lightning's precision (litgpt's --precision, NeMo's trainer.precision): "-true" keeps the parameters in that
    dtype, "-mixed" keeps fp32 parameters and autocasts; a command line and a YAML config read it alike."""
    for text, name in ((f"python finetune/lora.py --checkpoint_dir checkpoints/meta-llama/Llama-2-7b-hf "
                        f"--precision {value} --micro_batch_size 2\n", "run.sh"),
                       (f"precision: {value}\ncheckpoint_dir: checkpoints/tiiuae/falcon-7b\nmicro_batch_size: 4\n",
                        "config.yaml")):
        setup = apply_config_to_setup(load_config(text, name), TrainingSetup())
        assert setup.precision == precision and setup.provenance["precision"].origin == "config", text


from hypothesis import given, settings, strategies as st  # noqa: E402

_KEYS = ["per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size", "eval_accumulation_steps"]


@settings(max_examples=60, deadline=None)
@given(values=st.dictionaries(st.sampled_from(_KEYS), st.integers(1, 512), min_size=1),
       edits=st.tuples(st.dictionaries(st.sampled_from(_KEYS), st.integers(1, 512), max_size=2),   # counts stay counts
                       st.dictionaries(st.sampled_from(["gradient_checkpointing", "bf16"]), st.booleans(), max_size=1),
                       ).map(lambda t: {**t[0], **t[1]}),
       inline=st.booleans())
def test_python_edits_round_trip(values, edits, inline):
    """Edited keywords re-parse to their new values; every other keyword and comment is unchanged; no edit, same text."""
    args = [f"{k}={v}" for k, v in values.items()] + ['output_dir="out"  # keep me']
    body = ", ".join(a.split("  #")[0] for a in args) if inline else "\n" + "".join(f"    {a}\n" if "#" in a else f"    {a},\n" for a in args)
    text = f"import x\nargs = TrainingArguments({body})\ntrainer = Trainer(args=args)\n"
    doc = load_config(text, "train.py")
    assert apply_changes(doc, [])[0] == text
    new, _ = apply_changes(doc, [ConfigChange(key=k, from_value=values.get(k), to_value=v) for k, v in edits.items()])
    got = load_config(new, "train.py").settings
    for k, v in {**values, **edits}.items():
        assert got[k] == v
    assert got["output_dir"] == "out" and new.startswith("import x\nargs = TrainingArguments(") and new.endswith("trainer = Trainer(args=args)\n")
    if not inline:
        assert "# keep me" in new


def test_comment_after_the_last_argument_stays_on_its_line():
    text = 'args = TrainingArguments(\n    output_dir="out",\n    bf16=True  # mixed precision\n)\n'
    new = set_python_values(text, {"gradient_checkpointing": True, "output_dir": "o2"})
    assert new == 'args = TrainingArguments(\n    output_dir="o2",\n    bf16=True,  # mixed precision\n    gradient_checkpointing=True,\n)\n'


def test_a_processor_in_the_snippet_holds_the_image_cap_read_and_written_there():
    from ask_oom.tools.configs import Constraints, apply_config_to_setup, plan_fixes
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.labels import RootCause
    from ask_oom.tools.memory import resolve_model
    from ask_oom.tools.training_setup import TrainingSetup

    snippet = ('model = Qwen2VLForConditionalGeneration.from_pretrained("Qwen/Qwen2-VL-7B-Instruct", torch_dtype=torch.bfloat16)\n'
               'processor = AutoProcessor.from_pretrained("Qwen/Qwen2-VL-7B-Instruct", max_pixels=1280*28*28)\n'
               'args = TrainingArguments(output_dir="out", per_device_train_batch_size=1, bf16=True)\n')
    doc = load_config(snippet, "train.py")
    assert doc.settings["max_pixels"] == 1280 * 28 * 28          # integer arithmetic of literals is read, nothing else
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.image_max_pixels == 1003520 and setup.provenance["image_max_pixels"].detail.endswith("max_pixels")
    setup = setup.model_copy(update={"gpu": lookup_gpu("A100 80GB"), "model": resolve_model("Qwen/Qwen2-VL-7B-Instruct"),
                                     "images_per_sample": 1})
    plan = plan_fixes(setup, doc, [RootCause(label="vision_tokens", score=0.8)], Constraints(observed_oom=True))
    assert 'AutoProcessor.from_pretrained("Qwen/Qwen2-VL-7B-Instruct", max_pixels=262144)' in plan.fixed_config
    assert 'Qwen2VLForConditionalGeneration.from_pretrained("Qwen/Qwen2-VL-7B-Instruct", torch_dtype=torch.bfloat16)\n' \
        in plan.fixed_config                                        # the model's call is left alone
    without = load_config("".join(ln for ln in snippet.splitlines(True) if "Processor" not in ln), "train.py")
    assert not any(c.key == "max_pixels" for c in plan_fixes(setup, without, [RootCause(label="vision_tokens", score=0.8)],
                                                             Constraints(observed_oom=True)).changes)


@pytest.mark.parametrize("source", ["2**10", "a*3", "10**10**10", "(1<<62)*(1<<62)", "'x'*3"])
def test_only_integer_products_of_literals_are_computed(source):
    from ask_oom.tools.configs.python_doc import _UNREADABLE, literal

    assert literal(source) is _UNREADABLE
