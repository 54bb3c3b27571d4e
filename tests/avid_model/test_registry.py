from __future__ import annotations

import subprocess
import sys

import pytest

import avid_model
from avid_model import UnknownModelError, create_model, list_models


def test_list_models_names_both_configurations() -> None:
    assert {"avid-r2p1d18", "avid-tiny"} <= set(list_models())


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownModelError) as info:
        create_model("avid-resnet9000")
    message = str(info.value)
    assert "avid-resnet9000" in message
    assert "avid-r2p1d18" in message
    assert "avid-tiny" in message


def test_public_api_is_importable_from_the_package() -> None:
    for name in ("create_model", "list_models", "load_checkpoint", "save_checkpoint", "AVIDModel"):
        assert hasattr(avid_model, name)


def test_model_library_imports_no_service_frameworks() -> None:
    code = (
        "import sys, avid_model, avid_model.cli\n"
        "import avid_model.checkpoint, avid_model.reference, avid_model.inference\n"
        "import avid_model.media, avid_model.features, avid_model.commands\n"
        "bad = [m for m in ('fastapi', 'celery', 'redis', 'faiss', 'training', 'services') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""
