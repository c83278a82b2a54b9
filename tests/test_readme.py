"""The README's Python block, executed as written on an offline machine (from the repository's folder)."""

from __future__ import annotations

import ast
import contextlib
import io
import re

from tests.conftest import REPO, SHARED_DATA, shared_dataset


def _python_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return block


def test_the_readme_python_block_runs_offline_and_prints_what_it_says(tmp_path, monkeypatch, one_thread):
    shared_dataset("gardens_point")  # skips with the reason where the photographs are absent
    monkeypatch.setenv("NETVLAD_OFFLINE", "1")
    monkeypatch.setenv("NETVLAD_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.chdir(tmp_path)  # what it saves goes here; the two paths below are the README's, re-rooted
    block = _python_block()
    code = block.replace('"../shared/data/', f'"{SHARED_DATA.as_posix()}/').replace(
        'torch.hub.load(".",', f"torch.hub.load({str(REPO)!r},")
    assert code != block and code.count(str(REPO)) == 1
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    recall_line, offline_line = printed.getvalue().splitlines()
    # the recalls printed are those the README's comment states
    documented = re.search(r"print\(evaluate\(.*\)\.recall\)\s+# (\{.*?\})", block).group(1)
    assert ast.literal_eval(recall_line) == ast.literal_eval(documented)
    # offline, load_pretrained says in one line which file to download and where to put it
    assert "vgg16-netvlad-pitts30k is not available: downloads are disabled (NETVLAD_OFFLINE=1)" in offline_line
    assert f"save it as {tmp_path / 'pretrained' / 'Pitts30K_struct.mat'}" in offline_line
    assert (tmp_path / "gem.safetensors").is_file()

