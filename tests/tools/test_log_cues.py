"""Log cues: the phase a function name or sentence names, quantization, dtype errors and device maps, from the
shapes users paste (rich tracebacks, code lines, prose). Texts written for these tests."""

from __future__ import annotations

from ask_oom.tools.log_cues import log_cues


def test_rich_traceback_frame_names_the_save_phase():
    text = ("│ /usr/lib/python3.10/site-packages/bitsandbytes/nn/modules.py:301 in _save_to_state_dict │\n"
            "│ ❱ 301 │   self.weight.data = undo_layout(self.state.CxB, self.state.tile_indices) │\n")
    cues = log_cues(text)
    assert cues.phase == "checkpoint_save" and cues.phase_cue.line == 1
    assert cues.quantization is not None and cues.quantization.line == 1


def test_evaluation_loop_code_line_names_evaluation():
    cues = log_cues("all_preds = nested_concat(all_preds, logits, padding_index=-100)\nthen it dies with OOM")
    assert cues.phase == "evaluation"


def test_prose_optimizer_state_initialisation_is_the_optimizer_step():
    assert log_cues("CUDA out of memory. Tried to allocate 9.5 GiB.\nIt happens at optimizer state initialization").phase \
        == "optimizer_step"


def test_the_deepest_frame_wins():
    text = "  File \"x.py\", line 3, in from_pretrained\n  File \"y.py\", line 9, in merge_and_unload\n"
    assert log_cues(text).phase == "lora_merge"


def test_plain_training_oom_has_no_cue():
    cues = log_cues("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert cues.phase is None and cues.quantization is None and cues.dtype_error is None and cues.device_map is None


def test_dtype_errors_and_device_map_from_the_config():
    cues = log_cues("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0.",
                    'model = AutoModelForCausalLM.from_pretrained(path, device_map="auto")')
    assert cues.dtype_error is not None and cues.dtype_error.line == 1
    assert cues.device_map is not None and "device_map" in cues.device_map.text
    assert log_cues("x", "device_map: cuda:0").device_map is None  # a fixed placement is not a split


def test_a_device_map_only_proposed_as_a_fix_is_not_the_runs_own():
    """A reply's fix ("you need to add device_map='auto'", "需要…增加一个device_map='auto'参数") says the failing run
    did not split the model; a run that states its own ("I added device_map='auto'", "增加了…") did."""
    for proposed in ("需要在config的model中的llm中增加一个device_map='auto'参数", "you need to add device_map='auto' to it"):
        assert log_cues(f"CUDA out of memory\n{proposed}\n").device_map is None, proposed
    for own in ("I added device_map='auto' and GPU 0 fills up", "我增加了device_map='auto'参数，还是爆显存"):
        assert log_cues(f"CUDA out of memory\n{own}\n").device_map is not None, own


def test_gpu_models_named_in_the_text_but_not_years_or_ports():
    cues = log_cues("4 3090s on one node, 3 3090s and one 3080 on the other; 3080s only have 12GB\n"
                    "| 0 NVIDIA GeForce RTX 3090 | ... | 1 NVIDIA A100-SXM4-80GB |")
    assert cues.gpu_models == ["3090", "3080", "A100"]
    assert log_cues("since 2023 the server on port 8080 has 2 workers").gpu_models == []


def test_device_map_named_in_prose():
    cues = log_cues("loaded with AutoModelForCausalLM.from_pretrained() and different device_map(auto,balanced) on 8 GPUs")
    assert cues.device_map is not None and "device_map(auto" in cues.device_map.text


def test_an_adapter_loaded_for_inference_is_not_an_adapter_training_run():
    assert log_cues("finetuning_lora.py runs out of GPU memory").adapters is not None
    assert log_cues("我这里尝试使用llama-13b-hf做推理，但在加载lora模型时，就会报错").adapters is None


def test_the_last_failure_the_log_shows_is_a_cue():
    text = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n    x = batch['labels']\n"
            "KeyError: 'labels'\n[2024-01-01] torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n")
    cue = log_cues(text).failure
    assert cue is not None and cue.line == 5 and "ChildFailedError" in cue.text
    assert log_cues("  exitcode  : -9 (pid: 4242)\n").failure is not None
    assert log_cues("RuntimeError: CUDA error: an illegal memory access was encountered").failure is not None


def test_progress_bars_and_prose_show_no_failure():
    text = ("Loading checkpoint shards:  87%|████████▋ | 13/15 [03:00<00:27, 13.71s/it]\n"
            "W0816 api.py:897] Sending process 151 closing signal SIGTERM\n"
            "I wonder how Error handling works here, and exit code 0 is fine\n")
    assert log_cues(text).failure is None


def test_the_users_words_that_one_gpu_holds_more():
    for said in ("当视频帧数增加时，其中一张卡的显存会急剧增长，出现显存分配不均匀", "GPU 0 uses far more memory than the rest",
                 "memory is distributed unevenly across the GPUs"):
        cue = log_cues(said).imbalance
        assert cue is not None and cue.line == 1, said
    for said in ("I have 4 GPUs and one of them OOMs", "the loss is uneven between runs", "training on 8 cards, all fine"):
        assert log_cues(said).imbalance is None, said


def test_a_traceback_cut_before_its_exception_line_shows_no_failure():
    """Python prints the exception after the frames: a traceback without it has lost the error, not shown another."""
    cut = "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    trainer.train()\n[...]\n"
    assert log_cues(cut).failure is None
    assert log_cues(cut + "RuntimeError: NCCL error\n").failure is not None


def test_a_library_error_line_is_a_failure():
    """"CUDA error: an illegal memory access was encountered" is how the run died, even without an exception name."""
    assert log_cues("0.4.3 error CUDA error: an illegal memory access was encountered\n").failure is not None
    assert log_cues("NCCL error: unhandled system error\n").failure is not None


def test_a_vision_language_model_class_in_the_code_is_a_multimodal_run():
    """transformers' vision-language classes name the kind of model even when its path is a variable."""
    for code in ("model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir)",
                 "model = LlavaNextForConditionalGeneration.from_pretrained(path)",
                 "model = AutoModelForVision2Seq.from_pretrained(path)"):
        assert log_cues("RuntimeError: XPU out of memory.", code).vision is not None, code
    assert log_cues("RuntimeError: CUDA out of memory.", "model = T5ForConditionalGeneration.from_pretrained(p)").vision is None


def test_an_engine_named_without_training_words_is_a_server():
    cues = log_cues("Using VLLM0.7.2 server to start DeepSeek-R1 on 8x H200: cuda out of memory, service shuts down")
    assert cues.engine == "vllm" and cues.serving is not None and cues.serving.line == 1
    cues = log_cues("CUDA error: out of memory", "ollama create llama3.1:70b-128k -f Modelfile\n")
    assert cues.serving is not None and cues.serving.text.startswith("config: ") and cues.engine is None


def test_an_engine_beside_training_words_is_not_a_server():
    assert log_cues("GRPO training with vllm colocated: CUDA out of memory").serving is None
    assert log_cues("vllm serve Qwen/Qwen2-7B", "per_device_train_batch_size: 2\n").serving is None
    assert log_cues("from trl.vllm_utils import x\nCUDA out of memory").serving is None   # a module, not the engine


def test_device_map_functions_and_words():
    assert log_cues("model = dispatch_model(model, device_map=dm)").device_map is not None
    assert log_cues("`infer_auto_device_map` gives decoder = 0").device_map is not None
    assert log_cues("the device map puts everything on GPU 0").device_map is not None
    assert log_cues("model.to(device) on one map").device_map is None


def test_a_zero_stage_named_is_a_training_run():
    """DeepSpeed's ZeRO stages shard a training run's states: a paste that names one ("deepspeed_zero2_offload",
    "ZeRO-3") trains, even with no other training word; ZeRO-Inference and a zero count do not."""
    for text in ("使用deepspeed_zero2_offload依然会OOM，我的batch size已经是1了\n", "ZeRO-3 with offload still OOMs\n",
                 "--deepspeed ds_config_zero3.json\n"):
        assert log_cues(text).training is not None, text
    for text in ("bloom with zero-inference on 8 GPUs runs out of memory\n", "zero 1000 tokens left\n"):
        assert log_cues(text).training is None, text


def test_peft_kbit_preparation_on_the_stack_but_not_in_a_script():
    frame = ('Traceback (most recent call last):\n  File "/train.py", line 85, in <module>\n'
             "    model = prepare_model_for_kbit_training( model )\n"
             '  File "/site-packages/peft/utils/other.py", line 98, in prepare_model_for_kbit_training\n'
             "    param.data = param.data.to(torch.float32)\n")
    cue = log_cues(frame).kbit_preparation
    assert cue is not None and cue.line == 3
    assert log_cues(frame.splitlines()[3]).kbit_preparation.line == 1   # the frame alone
    # every QLoRA script calls it: a script pasted above a training OOM is not a failure inside it
    script = "model = prepare_model_for_kbit_training(model)\ntrainer = SFTTrainer(model=model)\ntrainer.train()\n"
    assert log_cues(script).kbit_preparation is None
    # the call must follow its frame line: an empty line between them is a script's, not a traceback's
    apart = '  File "/train.py", line 85, in <module>\n\n    model = prepare_model_for_kbit_training( model )\n'
    assert log_cues(apart).kbit_preparation is None
    assert log_cues(apart.replace("\n\n", "\n")).kbit_preparation is not None


def test_a_chat_that_fails_after_some_turns_but_not_multi_turn_training_data():
    said = log_cues("webui.py 跑起来后问了一个问题，再问第二个，就报错了\ntorch.cuda.OutOfMemoryError: CUDA out of memory.")
    assert said.conversation is not None and said.conversation.line == 1
    assert log_cues("It answers the first prompt, then after a few turns it runs out of VRAM.").conversation is not None
    # fine-tuning on multi-turn conversations is training data, not a chat's growing history
    assert log_cues("SFT on multi-turn conversation data with LoRA runs out of memory").conversation is None


CUT = ('Traceback (most recent call last):\n  File "/x/train.py", line 10, in <module>\n    main()\n'
       '  File "/x/trainer.py", line 766, in _inner_training_loop\n    self.optimizer.step()\n')


def test_a_paste_that_stops_inside_a_traceback_has_lost_its_error():
    """Python prints the exception after the frames: a paste that ends on a frame (and its code line) was cut before
    the error. One that shows the error, or goes on after the frames, was not."""
    cut = log_cues(CUT).cut_traceback
    assert cut is not None and cut.line == 4 and "_inner_training_loop" in cut.text
    assert log_cues(CUT + "torch.OutOfMemoryError: CUDA out of memory.\n").cut_traceback is None
    assert log_cues(CUT + "Does anyone know why?\nIt happens on 8 GPUs.\n").cut_traceback is None
    assert log_cues("step 1 loss 2.3\nstep 2 loss 2.1\n").cut_traceback is None
    ranked = "".join(f"[rank0]: {line}\n" for line in CUT.splitlines())   # torchrun's per-rank prefix
    assert log_cues(ranked).cut_traceback is not None and log_cues(ranked).cut_traceback.line == 4


def test_a_cut_traceback_is_its_own_evidence_not_a_log_without_failure():
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    names = {s.name for s in diagnose(DiagnoseRequest(log_text=CUT, retrieve=False)).signals}
    assert "traceback_cut" in names and "no_failure_shown" not in names
    names = {s.name for s in diagnose(DiagnoseRequest(log_text="step 1 loss 2.3\nstep 2 loss 2.1\n", retrieve=False)).signals}
    assert "no_failure_shown" in names and "traceback_cut" not in names
