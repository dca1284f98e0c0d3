"""A memory error told in words (English or Chinese) is read as such, GPU vs host, with growth and phase hints."""

from __future__ import annotations

import pytest

from ask_oom.tools.described_oom import described_oom


def test_english_gpu_oom_in_words():
    d = described_oom("i have 2 * v100-16G and want to serve https://huggingface.co/Qwen/Qwen1.5-MoE-A2.7B-Chat\n"
                      "then i got OOM on each gpu: allocate 372Mib but 367.12 left\n")
    assert d is not None and d.kind == "cuda_oom" and d.line == 2
    assert d.model == "Qwen/Qwen1.5-MoE-A2.7B-Chat"


def test_chinese_growth_until_oom():
    d = described_oom("使用的是这个命令，其中一张显卡的显存会无限增加直到out of memory\n")
    assert d is not None and d.kind == "cuda_oom" and d.growth_line == 1


def test_host_ram_in_chinese():
    d = described_oom("前面一段内存大约180g，后面直接超过256，训了几个steps\n")
    assert d is not None and d.kind == "host_oom"


def test_evaluation_phase_hint():
    d = described_oom("Training is fine but during evaluation I get CUDA out of memory\n")
    assert d is not None and d.phase == "evaluation"


def test_no_memory_words_is_none():
    assert described_oom("NCCL watchdog timeout while saving the checkpoint\n") is None
    assert described_oom("") is None


def test_oom_right_after_chinese_text():
    d = described_oom("在RTX 3090单卡上微调后进行evaluate会报OOM的错误\n")
    assert d is not None and d.kind == "cuda_oom" and d.phase == "evaluation"


def test_something_accumulated_across_steps_is_growth_but_accumulated_predictions_are_not():
    grows = described_oom("the running loss keeps its graph: losses += loss will accumulate until OOM")
    assert grows is not None and grows.growth_text is not None
    preds = described_oom("the trainer will accumulate all preds and logits on the GPU, then OOM")
    assert preds is not None and preds.growth_text is None


def test_apple_metal_insufficient_memory_is_a_gpu_memory_error():
    d = described_oom("libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] Command "
                      "buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")
    assert d is not None and d.kind == "cuda_oom"


def test_loose_model_names_and_out_of_gpu_memory():
    d = described_oom("fine-tuning Mixtral-8x7B with LoRA on A100-80GB runs out of GPU memory")
    assert d is not None and d.kind == "cuda_oom" and d.model == "Mixtral-8x7B"
    assert described_oom("OOM on an A100-80GB").model is None  # a GPU is not a model


def test_noise_that_happens_to_spell_oom_is_not_a_description():
    assert described_oom("K.V= Bl0Gx[6}z8U4sT]nx>X1ZGJ1OoM.QF.yYW'>0QUh{C+iVz!H=aq]g 'R9L::3F7dO1>A0x])\n") is None
    assert described_oom("训练时显存不足（OOM），怎么办？\n") is not None


def test_the_model_a_text_names_by_url_or_id():
    from ask_oom.tools.described_oom import model_named

    assert model_named("I followed https://www.modelscope.cn/models/Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8 and") == \
        "Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8"
    assert model_named("see https://huggingface.co/meta-llama/Llama-3.1-8B.") == "meta-llama/Llama-3.1-8B"
    assert model_named("fine-tuning Mixtral-8x7B on two cards") == "Mixtral-8x7B"
    assert model_named("nothing here but an A100-80GB") is None
    # files and script folders are passed over for the model named after them on the line, or on a later line
    assert model_named("accelerate launch --config_file configs/zero3.yaml run.py --model google/flan-t5-xxl") == \
        "google/flan-t5-xxl"
    assert model_named("see question-answering/run_seq2seq_qa.py\nwith Qwen2.5-7B") == "Qwen2.5-7B"
    assert model_named("int8/int4 with InternVL2-26B") == "InternVL2-26B"
    # the family's version apart from its name, then the size: one name, without the space
    assert model_named("fine-tune llama-3 70b with qlora") == "llama-3-70b"
    assert model_named("Llama 3.1 8B on one 4090") == "Llama3.1-8B"
    assert model_named("llama 2 models are great") is None


def test_a_model_named_by_its_family_size_word():
    """"openai/whisper-medium", "a T5-base model", "whisper large-v3": read as the model (registry.NAMED_SIZES sizes
    it); a size word that is no size of the family ("faster whisper xxl", a tool) is not a model."""
    from ask_oom.tools.described_oom import model_named

    assert model_named("finetune the openai/whisper-medium model with fleurs") == "openai/whisper-medium"
    assert model_named("80GB seems like a lot for just a T5-base model") == "T5-base"
    assert model_named("fine-tune whisper large-v3 on a 8gb card") == "whisper-large-v3"
    assert model_named("I've been using faster whisper xxl for months") is None
    assert model_named("the base model is fine") is None


def test_the_model_a_sentence_names_by_its_family_and_size_in_the_ways_people_write_them():
    """The family (any of model_names.FAMILIES) and its size, spaced, in parentheses, with qualifier words, glued, as
    an Ollama tag, or only the size said of the model or its parameters; a card's memory is no model size."""
    from ask_oom.tools.described_oom import model_named

    said = {
        "I am fine-tuning Llama 3.1 (70B) using the recipe": "Llama3.1-70B",
        "trying to train a gpt2 large(774M) model on a V100": "gpt2-large-774M",
        "QLora gpt oss 120B despite two GPUs": "gpt-oss-120B",
        "my setup is InternVL3 8B + six camera views": "InternVL3-8B",
        "Qwen1.5-chat 72B int4 on 4 V100": "Qwen1.5-chat-72B",
        "I am finetuning GPT NEO 1.3B with 1 GPU": "GPT-NEO-1.3B",
        "evaluating llava 34B on 8 cards": "llava-34B",       # a spaced size is not read as a version ("llava3-4B")
        "加载llama65b模型时候": "llama-65b",                     # glued: the family word, then the size
        "ollama run qwen2:72b-instruct-q4_K_M": "qwen2-72b-instruct-q4_K_M",
        "training 13B-chat for four epochs": "13B-chat",
        "converting an 80B param model": "80B",
        "Model with 9708M total parameters": "9.708B",
        "It's showing 3B parameters": "3B",
        "the model is only 7B with a batch of 1": "7B",
    }
    for text, name in said.items():
        assert model_named(text) == name, text
    for text in ("I have a 40 GB card and llama runs with 24 GB", "qwen3_5_35b job", "a 512M dataset"):
        assert model_named(text) is None, text


def test_a_family_released_in_one_size_is_named_by_its_bare_name():
    """ChatGLM, ChatGLM2 and ChatGLM3 came in 6B only: the bare name states the size (a stand-in of 6.2B, saying why);
    a traceback's module folder or file is no naming."""
    from ask_oom.tools.described_oom import model_named
    from ask_oom.tools.model_resolver import resolve_model_name

    assert model_named("模型使用的是chatglm，没有量化") == "chatglm"
    assert model_named("with the same arguments chatglm2 runs out of GPU memory") == "chatglm2"
    resolved = resolve_model_name("chatglm2")
    assert resolved is not None and resolved.read_as == "stand_in" and "one size chatglm2 was released in" in resolved.detail
    assert model_named('File "/root/.cache/huggingface/modules/transformers_modules/chatglm-6b/modeling_chatglm.py"') is None


def test_host_ram_too_small_in_chinese():
    d = described_oom("8*V100，deepspeed zero3，跑小份数据可以正常跑起来，但是跑3M数据量时会出现这种情况，是否可能是内存小了")
    assert d is not None and d.kind == "host_oom"
    # the verb before the memory word, as "超显存" is said of the GPU's: "超内存", "爆内存" are the host's
    for said in ("进行chatglm2 ptuning时，sh train.sh超内存\n", "数据一多就爆内存\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "host_oom", said


def test_the_card_or_its_memory_said_to_blow_up_in_chinese():
    """"显卡也爆" (the card blows up too) and "显存满了" (the GPU memory is full) are the GPU's failure; "内存炸了" the
    host's, as "内存爆了" is. A card's count or size alone is no failure."""
    for said in ("模型没做切割，12G的显卡也爆。\n", "跑到第二轮显存满了\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said
    d = described_oom("数据集一加载内存就炸了\n")
    assert d is not None and d.kind == "host_oom"
    assert described_oom("我有两张24G的显卡，想微调7B模型\n") is None


def test_a_process_killed_said_in_chinese_is_the_host_oom_killer():
    for said in ("程序在加载模型中被kill了，没有其他提示信息", "训练到一半进程被杀掉了"):
        d = described_oom(said)
        assert d is not None and d.kind == "host_oom", said


def test_a_kill_is_the_hosts_even_when_the_user_asks_about_gpu_memory():
    """A CUDA OOM raises an exception with a message; a silent kill is the host's OOM killer, whatever the user guesses."""
    d = described_oom("ubuntu，显卡4090，显存24G，程序在加载模型中被kill了，没有其他提示信息，是因为显存不够吗？")
    assert d is not None and d.kind == "host_oom"
    assert described_oom("I get CUDA out of memory on the GPU while training").kind == "cuda_oom"


@pytest.mark.parametrize("said", ["the model crashes due to memory overflow if the frames exceed 60",
                                  "HQQ runs into memory issues even when setting context length very short",
                                  "我部署qwen2VL-7b-awq模型，总是会报超过显存的问题"])
def test_memory_said_to_overflow_or_to_be_run_into_is_a_gpu_memory_failure(said):
    d = described_oom(said)
    assert d is not None and d.kind == "cuda_oom"


def test_growth_said_with_a_progressive_aspect_in_chinese():
    d = described_oom("按你这么设置的，显存一直在增长，差不多训练到10% 就会显存溢出")
    assert d is not None and d.kind == "cuda_oom" and d.growth_text is not None


def test_growth_without_a_named_failure_is_the_memory_problem_on_the_memory_that_grows():
    host = described_oom("这是资源图，512GB内存，显存一直没问题，稳定在50GB左右，内存会一直增长，哪里有内存泄漏")
    assert host is not None and host.kind == "host_oom" and host.growth_text is not None
    gpu = described_oom("GPU memory keeps increasing every step of the epoch")
    assert gpu is not None and gpu.kind == "cuda_oom"


@pytest.mark.parametrize("text", [
    "With VLLM_ENABLE_V1_MULTIPROCESSING=0 it OOMs: the deletion of the LLM object does not free all the memory.",
    "vLLM doesn't release memory on deletion of the LLM runner",
    "GPU memory is not released between rollouts",
    "qwen3 GRPO 训练几个轮次后显存不释放",
])
def test_memory_said_not_to_be_released_is_growth(text):
    """Memory that should have been given back and was not is still held: the next step or model adds to it."""
    d = described_oom(text)
    assert d is not None and d.growth_text is not None


def test_memory_said_to_grow_slowly_soar_or_creep_up():
    """"显存占用会慢慢的增大" (slowly grows), "显存一直飙升" (keeps soaring), "之后逐渐增大", "the memory is increasing in the
    process of training", "GPU memory keeps climbing": the growth described; a knob that increases memory is not."""
    for said in ("请问一下为什么dpo训练过程中显存占用会慢慢的增大一直到最后爆显存呢？\n", "显存一直飙升，到最后就会出错\n",
                 "开始占用显存为8G左右，之后逐渐增大，一天之后显存超过24G爆掉。\n",
                 "I encounter the OOM when runing the stage2, the memory is increasing in the process of training.\n",
                 "GPU memory keeps climbing during LoRA fine-tuning until it runs out\n"):
        d = described_oom(said)
        assert d is not None and d.growth_text is not None, said
    d = described_oom("the batch size is increasing the memory a lot, it runs out of memory\n")
    assert d is not None and d.growth_text is None


@pytest.mark.parametrize("said", [
    "基于PIQA 数据集进行推理，连续执行 44 次后，出现 OOM",
    "After 40 consecutive requests the server runs out of GPU memory",
    "Passing 5 audio files, the third or fourth file OOMs on the 24 GB card",
    "Working memory from prior iterations isn't fully released between files, so it runs out of memory",
    "When qlora tuning llama-7b, GPU memory usage starts from ~5G to more than 10G, and eventually OOM",
])
def test_the_same_work_repeated_until_it_runs_out_is_growth(said):
    """A repeated input cannot have grown: what the runs leave behind has. Training steps are not read (a longer batch
    may arrive at any step), nor a card size said with 'from ... to'."""
    d = described_oom(said + "\n")
    assert d is not None and d.growth_text is not None


def test_steps_and_card_sizes_are_not_growth():
    for said in ("after 50 steps it runs out of memory\n", "I start from 24GB to 48GB GPUs and still run out of memory\n"):
        d = described_oom(said)
        assert d is None or d.growth_text is None, said


def test_a_generation_word_in_a_sentence_about_training_is_not_the_phase():
    """"the script generates a CUDA OOM while starting the training", "inference at this length is fine, but fine-tuning
    blows the memory": the sentence is about training, so it names no generation phase; a model that was trained or
    fine-tuned ("微调后的模型", "the fine-tuned model") is still one that generates."""
    for said in ("distill_logits.py script generates cuda oom issue while starting the training.\n",
                 "我现在的文章稳定在2w字左右，其实这个长度推理是没问题的，但是做微调就立马爆显存\n"):
        d = described_oom(said)
        assert d is not None and d.phase is None, said
    for said in ("Inference with the fine-tuned model runs out of memory\n", "微调后的模型推理时显存不足\n"):
        d = described_oom(said)
        assert d is not None and d.phase == "generation", said


@pytest.mark.parametrize("said, phase", [
    ("When I finetune alpaca-lora 7b on an A10 it's fine, but when I use the trained model in the generate script I get "
     "the out of memory error.", "generation"),
    ("OOM during training, but evaluation is fine", None),
    ("Training is fine but evaluation OOMs", "evaluation"),
    ("inference at that length is fine, but fine-tuning runs out of memory", None),
    ("训练没问题，但是推理时显存不足", "generation"),
    ("推理没问题，但是训练时显存不足", None),
])
def test_a_contrast_takes_the_phase_of_the_clause_that_fails(said, phase):
    """Two runs set against each other on one line: the one that worked names no phase, the failing one does."""
    d = described_oom(said)
    assert d is not None and d.phase == phase, said


def test_evaluation_argument_names_are_not_the_evaluation_phase():
    """A pasted launch command prints --per_device_eval_batch_size in every run: it says nothing of when it failed."""
    text = ("Running the training script gives me OOM constantly on 4 x A100 80GB.\n"
            "    --per_device_train_batch_size 1 --per_device_eval_batch_size 1 --do_eval --evaluation_strategy steps\n")
    assert described_oom(text).phase is None
    assert described_oom("It runs out of memory during eval on 4 x A100 80GB.").phase == "evaluation"


def test_freeing_memory_is_not_growth():
    assert described_oom("we free the memory after each step and it works") is None


def test_batch_that_can_only_be_one_states_the_memory_limit():
    d = described_oom("4张80G的A100好像不能支持基于lora的7b bloom在batch为4的条件下训练，我对比了一下，batch只能设置到1")
    assert d is not None and d.kind == "cuda_oom"
    assert described_oom("the batch size can only be set to 1 on my 24GB card").kind == "cuda_oom"
    assert described_oom("batch size 16 works fine, loss is nan") is None


def test_model_names_next_to_chinese_text():
    from ask_oom.tools.described_oom import model_named

    assert model_named("我这里尝试使用llama-13b-hf做推理，设备是4张10G 3080") == "llama-13b-hf"
    assert model_named("Qwen2-VL-7B的微调out of memory") == "Qwen2-VL-7B"


def test_evaluation_outputs_said_to_accumulate_are_the_memory_problem_in_evaluation():
    text = ("I am using transformers.Trainer to pre-train a model with MLM. The logits obtained on the evaluation step are "
            "accumulated:\n`preds_host = logits if preds_host is None else nested_concat(preds_host, logits)`\n"
            "1000 examples with max_length 512 and vocab_size 30522 occupy more than 14 Gb of memory.\n")
    d = described_oom(text)
    # the accumulation (line 1) or the memory it takes (line 3) is the evidence; the phase is evaluation either way
    assert d is not None and d.kind == "cuda_oom" and d.phase == "evaluation" and d.line in (1, 3)
    # accumulation without any memory word is only a description of the code
    assert described_oom("The Trainer accumulates the logits of every evaluation batch.\n") is None


def test_a_model_named_size_first():
    from ask_oom.tools.described_oom import model_named

    assert model_named("4张80G的A100好像不能支持基于lora的7b bloom在batch为4的条件下训练") == "bloom-7b"
    assert model_named("fine-tuning the 70B llama with QLoRA") == "llama-70B"


def test_a_question_with_a_config_but_no_error_is_a_memory_question():
    from ask_oom.tools.described_oom import memory_question

    q = memory_question("Try to fine tune Meta-Llama-3.1-8B-Instruct-bnb-4bit on a 80GB H100 using cutoff_len 51974\n")
    assert q is not None and q.kind == "cuda_oom" and q.line == 1 and q.model == "Meta-Llama-3.1-8B-Instruct-bnb-4bit"
    assert memory_question("RuntimeError: expected scalar type Half but found Float\nusing this config\n") is None
    assert memory_question("loss is nan after 100 steps with this config, any idea why\n") is None
    assert memory_question("\n\n") is None and memory_question("my config:\n") is None   # no sentence: nothing asked


@pytest.mark.parametrize("text, kind", [
    ("I just cannot start instruction tuning for stage2 on single A100 with 40GB VRAM.", "cuda_oom"),
    ("请问这是正常的吗？ 如果是，那至少需要多少显存才能满足需求", "cuda_oom"),
    ("请问Qwen3-VL-30B模型微调显存需要多少？", "cuda_oom"),
    ("单卡只有12g跑不了，该模型能支持两张并行吗", "cuda_oom"),
    ("I wonder whether it is possible to fine-tune the whole model whose LLM is 7B using one 80G GPU", "cuda_oom"),
    ("how much RAM does fine-tuning the 7B model need?", "host_oom"),   # only the host's RAM named
])
def test_words_that_ask_whether_the_run_fits_are_a_capacity_question(text, kind):
    from ask_oom.tools.described_oom import capacity_question

    q = capacity_question(text)
    assert q is not None and q.kind == kind and q.line == 1


def test_a_question_reads_its_phase_as_a_failure_line_does():
    """Generation named beside training ("fine-tuning ... for generating long answers") is what the trained model will
    do, not the phase, in a question as in a failure line (described_oom._named_phase); inference alone is."""
    from ask_oom.tools.described_oom import capacity_question, memory_question

    training = "How much GPU memory does fine-tuning need for generating long answers with a 7B model?"
    assert capacity_question(training).phase is None
    assert memory_question(training + "\n").phase is None
    assert capacity_question("How much GPU memory does inference of a 7B model need?").phase == "generation"


@pytest.mark.parametrize("text", ["my GPU has 24GB and the run is slow", "how much faster is it on an H100?",
                                  "is it possible to resume from a checkpoint?"])
def test_words_that_ask_nothing_of_memory_are_no_capacity_question(text):
    from ask_oom.tools.described_oom import capacity_question

    assert capacity_question(text) is None


def test_a_capacity_question_without_an_error_is_diagnosed_as_the_memory_it_asks_about():
    """Pasted words with no error and no config ("cannot start ... on a single A100 with 40GB") are the memory question
    they ask, not "no memory error"; an exception shown beside them outranks it."""
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.log_parser import parse_log
    from ask_oom.tools.report_refinement import refine_report

    text = "I just cannot start instruction tuning for stage2 on a single A100 with 40GB VRAM.\n"
    refined = refine_report(parse_log(text), text, cues=log_cues(text))
    assert refined.report.kind == "cuda_oom" and any("whether the run fits" in n for n in refined.notes)
    shown = text + "Traceback (most recent call last):\nValueError: bad shape\n"
    assert refine_report(parse_log(shown), shown, cues=log_cues(shown)).report.kind != "cuda_oom"


def test_a_path_names_a_model_only_by_its_last_folder():
    from ask_oom.tools.described_oom import model_named

    assert model_named("Input a video path or URL <<< /data1/qwen2vl/test/test.mp4") is None   # folders, not an org/name id
    assert model_named("Loading the model using model_dir: /tmp/Qwen2.5-VL-32B-Instruct/") == "Qwen2.5-VL-32B-Instruct"
    assert model_named("serve Qwen/Qwen2-7B-Instruct now") == "Qwen/Qwen2-7B-Instruct"


def test_a_model_said_only_by_its_size():
    from ask_oom.tools.described_oom import model_named

    assert model_named("试过几个13B 模型 微调的时候 都OOM报错") == "13B"
    assert model_named("training a 7B model on a 24GB card") == "7B"
    assert model_named("two 80GB cards, plenty of models") is None        # a memory size is no model size


import pytest as _pytest


@_pytest.mark.parametrize("text", [
    "the launcher dies with a SIGKILL as soon as the shards start loading",
    "training exited with code -9 after a few minutes, no traceback at all",
    "it says there is not enough cpu memory to initialize the optimizer",
    "there is no enough host memoryy for the offload buffers",
    "the 70B checkpoint needs more than our machine's 256GB RAM, it exceeds 256 GB RAM easily",
])
def test_a_host_memory_failure_said_in_words_is_a_host_oom(text):
    """SIGKILL / exit -9 said in words is the OOM killer (oom-signals.md), and host memory said to be short or exceeded
    is the host running out, typos and all."""
    from ask_oom.tools.described_oom import described_oom

    found = described_oom(text)
    assert found is not None and found.kind == "host_oom", text


@_pytest.mark.parametrize("text", ["we have 512GB RAM and 8 GPUs", "the signal handler printed its summary",
                                   "a 7B model exceeds nothing on this box"])
def test_ram_or_signals_named_without_a_failure_describe_nothing(text):
    from ask_oom.tools.described_oom import described_oom

    assert described_oom(text) is None


def test_the_memory_named_last_before_the_failure_is_what_ran_out():
    host = described_oom("During full fine-tuning GPU memory peaks at around 14GB per card, but the system RAM usage quickly "
                         "reaches 500GB, resulting in an \"out of memory\" error.\n")
    assert host is not None and host.kind == "host_oom"
    for gpu in ("The RAM is fine but the GPU runs out of memory at step 3\n", "内存够用，但是显存不足\n",
                "RAM usage is ok; it runs out of GPU memory\n"):
        d = described_oom(gpu)
        assert d is not None and d.kind == "cuda_oom", gpu


def test_a_cards_vram_size_is_not_a_failure():
    assert described_oom("I train on 8 RTX 4090 GPUs, each with 24GB VRAM, and the loss looks fine\n") is None
    for said in ("it runs out of VRAM at step 5\n", "VRAM overflow right after loading\n", "not enough VRAM for 7B\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said


def test_chinese_verbs_before_the_gpu_memory_and_a_minus_nine_in_words():
    for said in ("更新了版本之后都炸显存了\n", "使用deepspeed zero2的话会超显存\n", "一跑就爆显存\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said
    d = described_oom("then the script crashed with an error -9. No error message.\n")
    assert d is not None and d.kind == "host_oom"     # -9 is SIGKILL: the kernel's OOM killer
    assert described_oom("the loss was -9.5 at step 3 and error -90 is unrelated\n") is None


@pytest.mark.parametrize("text, phase", [
    ("Llama uses significantly more memory in 4.38 & 4.39 than 4.37 with identical code", None),
    ("Nvidia-smi shows that rank-0 GPU consumes extra 870*7 MiB memory compared with other GPUs.", None),
    ("The video features occupy a huge amount of GPU memory during inference.", "generation"),
    ("qwen的fp16模型推理只占20G左右，使用lmdeploy去调用显存占40g，请问这个是什么导致的？", "generation"),
    ("This leaks memory indefinitely:", None),
    ("改了max_seq_length以后现在显存不会溢出了", None),
])
def test_memory_used_in_excess_is_the_problem_described(text, phase):
    d = described_oom(text)
    assert d is not None and d.kind == "cuda_oom" and d.phase == phase


@pytest.mark.parametrize("text", ["the model uses 14GB of memory", "I use more data than before",
                                  "显存充足，训练正常"])
def test_memory_named_without_excess_is_no_problem(text):
    assert described_oom(text) is None


@pytest.mark.parametrize("said", [
    "But I got OOM error when I saved the model.",
    "when iteration>=3000,it save weight oom,how to fix it?",
    "Every time the program saves a checkpoint, a serious memory overflow error will occur",
    "Model can be forwarded and backwarded. But when model get state dict, gpu is OOM.",   # the save's first step
    'model.save_pretrained_gguf("model", tokenizer) fails with CUDA driver error: out of memory',
])
def test_saving_a_checkpoint_said_in_any_tense_is_the_phase(said):
    d = described_oom(said)
    assert d is not None and d.phase == "checkpoint_save", said


@pytest.mark.parametrize("said", ["I want to move to 32 V100s and resume from CKPT, got OOM",
                                  "Resuming training from the checkpoint runs out of CUDA memory"])
def test_resuming_from_a_checkpoint_is_loading_it(said):
    d = described_oom(said)
    assert d is not None and d.phase == "model_loading", said


def test_a_saved_model_spoken_of_is_not_the_phase():
    for said in ("Having saved a model in 8bit I loaded it in 4bit and it goes out of memory",
                 "the saved model goes OOM when I load it in 4bit", "数据保存在本地，训练时显存不足"):
        d = described_oom(said)
        assert d is None or d.phase != "checkpoint_save", said


@_pytest.mark.parametrize("text", ['I try the command and it just says killed after the model loads',
                                   'Both stopped (Killed) without any error message.',
                                   'converting the 7b model, it always popup "killed" message'])
def test_the_shells_killed_quoted_or_said_to_be_printed_is_the_host_oom_killer(text):
    """The shell prints "Killed" when the kernel's OOM killer ends a process (oom-signals.md); users quote it, bracket
    it or say the run "says killed". "I killed the job" is the user's own act, not a failure."""
    found = described_oom(text)
    assert found is not None and found.kind == "host_oom", text
    assert described_oom("I killed the job and restarted it with a smaller model\n") is None


def test_gpu_memory_said_not_to_hold_the_run_in_chinese():
    """"显存装不下" / "显存放不下" (the GPU memory cannot hold it) is the GPU's failure, as "显存不够" is."""
    for said in ("1 batch，A100 80G显存装不下\n", "这个模型显存放不下\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said


@_pytest.mark.parametrize("text", ["I met the OOM of cpu problem when i run the rl training script.",
                                   "CPU OOM when loading the model on my 24GB GPU",
                                   "the merge dies with a host out-of-memory error"])
def test_an_oom_said_of_the_host_by_name_is_the_hosts(text):
    """"OOM" names no memory by itself; "CPU OOM", "the OOM of cpu", "host out of memory" name the host's, even when
    the text also names the GPU."""
    found = described_oom(text)
    assert found is not None and found.kind == "host_oom", text
    assert described_oom("OOM in the backward pass on the GPU\n").kind == "cuda_oom"


def test_out_of_memory_said_without_its_of():
    """"cause out memory", "ran out memory": the "of" dropped, as non-native writers often do, is still the failure;
    memory that "runs out" with nothing after it, or a word ending in "out", is not read this way."""
    for said in ("23 minutes of audio transcribe fine, but a five minutes audio cause out memory\n",
                 "it ran out memory at step 3\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said
    assert described_oom("a new layout memory map\n") is None


def test_memory_said_to_run_out_overload_or_error_in_prose():
    """Memory said to run out with a word between ("my gpu memory still run out"), to overload, to exceed its limit
    in Chinese ("显存超标"), or a "memory error" named in prose is the failure described; memory that "never runs out",
    that runs out of something else, an "illegal memory access" and Python's one-word MemoryError are not."""
    for said in ("I didn't change the data and parameters, but my gpu memory still run out.\n",
                 "GPU memory ran out at step 10\n", "it stops after a while due to memory overload\n",
                 "为什么我5070加32内存，用不了克隆，都显示显存超标。\n",
                 "when I tried to use this trained model in generate script I have got the allocalate memory error.\n",
                 "I encounter the memory error (allocating 253GB of VRAM)\n"):
        d = described_oom(said)
        assert d is not None and d.kind == "cuda_oom", said
    for said in ("the memory never runs out\n", "the memory pool runs out of handles\n",
                 "an illegal memory access error in the attention kernel\n"):
        assert described_oom(said) is None, said


def test_memory_said_to_grow_with_each_turn_or_along_with_something():
    """"每次对话显存占用都会增加几百Mb" (each turn adds a few hundred MB of GPU memory), "消耗显存也随之增长" (the GPU
    memory grows along with it), "GPU memory grew continuously": memory said to grow is the problem described; a
    clause with no memory word ("每次训练都增加了数据", more data each time) is not."""
    for said in ("每次对话显存占用都会增加几百Mb，请问除了重启程序有别的解决办法吗？\n", "随着对话轮数的增多，对应消耗显存也随之增长\n",
                 "GPU memory grew continuously because the cache kept every call\n"):
        d = described_oom(said)
        assert d is not None and d.growth_text is not None, said
    for said in ("每次训练都增加了数据\n", "数据随之增加\n"):
        assert described_oom(said) is None, said



def test_the_host_named_outright_anywhere_outranks_a_general_oom():
    """"I always get OOM on CPU" names the host; a general "get OOM when loading" on an earlier line does not outrank it.
    Chinese 内存 is not read as the host outright: pastes use it for the GPU's memory too."""
    d = described_oom("get OOM when loading llama2 70b from the line below\n"
                      "I am using 8*A100 (32GB GPU Memory) and 670GB of RAM, I always get OOM on CPU.\n")
    assert d is not None and d.kind == "host_oom" and d.line == 2
    d = described_oom("GLM-4.5V-FP8 runs out of memory on one A100 GPU\n我在单卡A100上运行时会报内存不足\n")
    assert d is not None and d.kind == "cuda_oom"
