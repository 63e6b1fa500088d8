"""Architecture configs and reading them from a checkpoint folder (JSON only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wan_models.wan2_1.config import T2V_1_3B, T2V_14B, ConfigError, load_dit_config

OFFICIAL_14B = {
    "_class_name": "WanModel",
    "_diffusers_version": "0.30.0",
    "dim": 5120,
    "eps": 1e-06,
    "ffn_dim": 13824,
    "freq_dim": 256,
    "in_dim": 16,
    "model_type": "t2v",
    "num_heads": 40,
    "num_layers": 40,
    "out_dim": 16,
    "text_len": 512,
}
DIFFUSERS_1_3B = {
    "_class_name": "WanTransformer3DModel",
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 8960,
    "freq_dim": 256,
    "image_dim": None,
    "in_channels": 16,
    "num_attention_heads": 12,
    "num_layers": 30,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
}


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_variant_numbers() -> None:
    assert (T2V_14B.dim, T2V_14B.ffn_dim, T2V_14B.num_heads, T2V_14B.head_dim, T2V_14B.num_layers) == (
        5120,
        13824,
        40,
        128,
        40,
    )
    assert (T2V_1_3B.dim, T2V_1_3B.ffn_dim, T2V_1_3B.num_heads, T2V_1_3B.head_dim, T2V_1_3B.num_layers) == (
        1536,
        8960,
        12,
        128,
        30,
    )


def test_official_folder(tmp_path: Path) -> None:
    write(tmp_path / "Wan2.1-T2V-14B" / "config.json", OFFICIAL_14B)
    (tmp_path / "Wan2.1-T2V-14B" / "model.py").write_text("raise SystemExit('executed!')")
    config = load_dit_config(tmp_path / "Wan2.1-T2V-14B", name="T2V-14B")
    assert config == T2V_14B


def test_diffusers_folder(tmp_path: Path) -> None:
    write(tmp_path / "repo" / "transformer" / "config.json", DIFFUSERS_1_3B)
    assert load_dit_config(tmp_path / "repo", name="T2V-1.3B") == T2V_1_3B


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({k: v for k, v in OFFICIAL_14B.items() if k != "ffn_dim"}, "field 'ffn_dim' is missing"),
        ({**OFFICIAL_14B, "num_heads": -4}, "field 'num_heads' is -4; it must be a positive integer"),
        ({**OFFICIAL_14B, "dim": "5120"}, "field 'dim' is '5120'; it must be a positive integer"),
        ({**OFFICIAL_14B, "num_heads": 48}, "field 'num_heads' is 48, which does not divide dim 5120"),
        (
            {**OFFICIAL_14B, "model_type": "i2v"},
            "field 'model_type' is 'i2v'; only 't2v' is read from config.json",
        ),
        ({**DIFFUSERS_1_3B, "image_dim": 1280}, "field 'image_dim' is set"),
        ({**DIFFUSERS_1_3B, "patch_size": [1, 4, 4]}, r"field 'patch_size' is \[1, 4, 4\]; only \[1, 2, 2\]"),
        ([1, 2], "must hold a JSON object, not list"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path / "config.json", data)
    with pytest.raises(ConfigError, match=message) as info:
        load_dit_config(path)
    assert str(info.value).startswith(str(path))


def test_malformed_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_dit_config(tmp_path / "config.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_dit_config(tmp_path / "empty")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"dim": NaN}', "holds NaN"),
        ('{"dim": ' + "7" * 5000 + "}", "is not valid JSON"),
        ("[" * 3000 + "]" * 3000, "is nested too deeply"),
        (" " * (2**20 + 1), "more than the 1,048,576 allowed"),
    ],
)
def test_hostile_config_files_are_one_sentence(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_dit_config(path)
    assert str(path) in str(info.value)
    assert len(str(info.value)) < 600


def test_a_huge_integer_field_is_not_echoed_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {**OFFICIAL_14B, "dim": 10**400})
    with pytest.raises(ConfigError, match="field 'dim' is 1000000") as info:
        load_dit_config(path)
    assert len(str(info.value)) < 400


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_dit_config(fifo)
