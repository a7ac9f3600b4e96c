"""A tiny LlavaForConditionalGeneration built in code (seconds): CLIP tower over 16 x 16 images with
4 px patches (16 visual tokens), LLaVA projector, 2-layer Llama. For EvoComp label / eval tests."""
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

IMAGE_ID, BOS_ID = 3, 2
N_VISUAL = 16


def tiny_llava(seed=0, width=32, vocab=64, attn="eager"):
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                              image_size=16, patch_size=4, projection_dim=24)
    text = LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       pad_token_id=0, bos_token_id=BOS_ID, eos_token_id=0)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_ID, vision_feature_layer=-2,
                      vision_feature_select_strategy="default", image_seq_length=N_VISUAL)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(cfg).eval()


def sample(seed=0, question=(10, 11, 12), answer=(20, 21)):
    """(pixel_values [1, 3, 16, 16], input_ids [L] with the image run expanded, labels [L] on the answer)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, 3, 16, 16, generator=g)
    ids = torch.tensor([BOS_ID] + [IMAGE_ID] * N_VISUAL + list(question) + list(answer))
    labels = torch.full_like(ids, -100)
    labels[-len(answer):] = ids[-len(answer):]
    return pixels, ids, labels


WORDS = ["[PAD]", "[UNK]", "[BOS]", "<image>"] + [f"w{i}" for i in range(4, 64)]


def save_tiny_llava(directory, seed=0, n_images=3):
    """A tiny LLaVA checkpoint folder (model + word-level tokenizer + image processor) and a JSONL data
    set of n_images PNGs beside it: (checkpoint dir, data.jsonl path)."""
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessorPil, PreTrainedTokenizerFast

    d = Path(directory)
    tiny_llava(seed).save_pretrained(d / "mllm")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                            extra_special_tokens={"image_token": "<image>"}).save_pretrained(d / "mllm")
    CLIPImageProcessorPil(size={"height": 16, "width": 16}, do_center_crop=False, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3).save_pretrained(d / "mllm")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / f"img{i}.png")
        rows.append({"image": f"img{i}.png", "question": f"w{10 + i} w11 w12", "answer": f"w{20 + i}"})
    (d / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "mllm", d / "data.jsonl"
