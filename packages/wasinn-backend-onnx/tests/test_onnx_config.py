"""The model config: defaults, every key, and the errors a guest or embedder gets."""

from __future__ import annotations

from typing import Any

import pytest

from wasinn_backend_onnx.config import ACCEPTED_KEYS, ConfigError, SessionConfig, parse_config

KNOWN = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"]


def parse(config: dict[str, Any], cores: int = 4) -> SessionConfig:
    return parse_config(config, cores, KNOWN)


def test_defaults() -> None:
    assert parse({}, cores=6) == SessionConfig(intra_op_num_threads=6, inter_op_num_threads=1,
                                               graph_optimization_level="all", execution_mode="sequential",
                                               allow_spinning=False, providers=None, provider_options={})


def test_every_key() -> None:
    config = parse({
        "intra_op_num_threads": 0,
        "inter_op_num_threads": 3,
        "graph_optimization_level": "Extended",
        "execution_mode": "parallel",
        "allow_spinning": True,
        "providers": ["cuda", "CPUExecutionProvider"],
        "provider_options": {"CUDA": {"device_id": 1, "cudnn_conv_use_max_workspace": True, "arena": "x"}},
    })
    assert config.intra_op_num_threads == 0
    assert config.inter_op_num_threads == 3
    assert config.graph_optimization_level == "extended"
    assert config.execution_mode == "parallel"
    assert config.allow_spinning is True
    assert config.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert config.provider_options == {"CUDAExecutionProvider": {"device_id": "1", "cudnn_conv_use_max_workspace": "1",
                                                                 "arena": "x"}}
    assert parse({"providers": "openvino"}).providers == ("OpenVINOExecutionProvider",)


def test_unknown_keys_list_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"num_threads": 2, "intra_op_num_threads": 1})
    assert "unknown config key(s) num_threads" in str(error.value)
    assert all(key in str(error.value) for key in ACCEPTED_KEYS)


@pytest.mark.parametrize(("config", "message"), [
    ({"intra_op_num_threads": -1}, "intra_op_num_threads must be an integer from 0"),
    ({"intra_op_num_threads": True}, "intra_op_num_threads must be an integer"),
    ({"intra_op_num_threads": 2.0}, "intra_op_num_threads must be an integer"),
    ({"intra_op_num_threads": 17}, "to 16"),  # 4 cores x 4: a guest must not spawn 10k threads
    ({"inter_op_num_threads": "1"}, "inter_op_num_threads must be an integer"),
    ({"graph_optimization_level": 99}, "graph_optimization_level must be one of 'disable', 'basic'"),
    ({"execution_mode": "async"}, "execution_mode must be one of 'sequential', 'parallel'"),
    ({"allow_spinning": 1}, "allow_spinning must be true or false"),
    ({"providers": []}, "providers must be a provider name or a non-empty list"),
    ({"providers": {"cuda": 1}}, "providers must be"),
    ({"providers": ["cuda", 7]}, "unknown execution provider 7"),
    ({"providers": ["cuda", "CUDA"]}, "lists a provider twice"),
    ({"provider_options": []}, "provider_options must be an object"),
    ({"provider_options": {"tpu9000": {}}}, "unknown execution provider 'tpu9000'"),
    ({"provider_options": {"cuda": 1}}, "provider_options['cuda'] must be an object"),
    ({"provider_options": {"cuda": {"x": [1]}}}, "must be a string, number or boolean"),
    ({"providers": ["cpu"], "provider_options": {"cuda": {}}}, "not in providers"),
])
def test_invalid_values(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(config)
    assert message in str(error.value)
