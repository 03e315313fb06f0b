"""Model folders (safetensors + config.json + model card) and the Hub, against a local stand-in of its HTTP API.

No test reaches the network: the Hub is a tiny http.server on 127.0.0.1 that keeps pushed files in
memory and serves them back the way huggingface_hub asks for them.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import spos
from spos.cli import main
from spos.data.datasets import build_datasets
from spos.data.loaders import build_loader
from spos.errors import UserError
from spos.nn.supernet import SuperNet
from spos.space.searchspace import get_space
from spos.store import checkpoint
from spos.store.pretrained import ALIASES_KEY, CONFIG_NAME, WEIGHTS_NAME, load_folder
from spos.train import evaluate
from spos.train.config import load_config
from spos.train.loop import run_training


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "retrain"
    run_training(load_config("digits-retrain", ["train.epochs=1"]), out, progress=False)
    return out


@pytest.fixture(scope="module")
def folder(run):
    out = run.parent / "model"
    assert main(["export", str(run / "best.pt"), "--format", "hf", "--output", str(out)]) == 0
    return out


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_model_folder_rebuilds_the_network_and_measures_what_it_holds(run, folder):
    x = build_datasets("digits").val.images[:16]
    model = spos.from_pretrained(folder)
    assert torch.equal(_logits(model, x), _logits(checkpoint.load_model(run / "best.pt"), x))
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["kind"] == "fixed" and config["input"]["dataset"] == "digits" and config["flops"] > 0
    assert config["arch"]["text"] == str(model.arch) and "root" not in config["training"]["config"]["data"]
    val = build_datasets("digits").val  # the card's figure is the figure of these exact weights
    assert config["measured"]["top1"] == evaluate(model, build_loader(val, batch_size=256, train=False))["top1"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: spos") and f"{100 * config['measured']['top1']:.2f}%" in card
    assert "![architecture](architecture.png)" in card and (folder / "architecture.png").is_file()
    assert not any(p.suffix in (".pt", ".bin", ".pkl") for p in folder.iterdir())  # no pickle anywhere


def test_a_model_folder_is_a_checkpoint_to_every_command(folder, tmp_path, capsys):
    assert main(["eval", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(
        json.loads((folder / CONFIG_NAME).read_text())["measured"]["top1"])
    assert main(["export", str(folder), "--output", str(tmp_path / "m.onnx"), "--batch-size", "2"]) == 0
    assert main(["export", str(folder), "--format", "hf", "--output", str(folder)]) == 2  # exists: needs --force
    assert "pass --force to replace" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["export", str(folder), "--format", "hf", "--output", str(tmp_path / "mine"), "--force"]) == 2
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # --force never replaces what is not ours


def _two_weights_checkpoint(path: Path, space, config: dict) -> tuple[Path, dict]:
    """A digits network whose EMA weights (another initialisation) differ from its raw ones, and both nets."""
    from spos.nn.fixed import FixedNet
    from spos.space.architecture import Architecture

    arch = Architecture.parse("0,1,2,3," * 4 + "0,1,2,3/" + "0,1,2,3," * 4 + "0,1,2,3")
    torch.manual_seed(1)
    raw, ema = FixedNet(space, arch).eval(), FixedNet(space, arch).eval()
    return checkpoint.save_atomic(checkpoint.fixed_payload(raw, config=config, ema=ema.state_dict()), path), \
        {"raw": raw, "ema": ema}


@pytest.mark.parametrize("choice, weights", [([], "raw"), (["--ema"], "ema")])
def test_a_model_folder_records_whether_it_holds_ema_weights(tmp_path, capsys, digits_space, digits_run,
                                                               choice, weights):
    source, nets = _two_weights_checkpoint(tmp_path / "net.pt", digits_space, digits_run)
    out = tmp_path / "model"
    assert main(["export", str(source), "--format", "hf", "--no-measure", "--output", str(out), *choice]) == 0
    assert f"{weights} weights" in capsys.readouterr().out
    assert json.loads((out / CONFIG_NAME).read_text())["weights"] == weights
    x = build_datasets("digits").val.images[:16]
    assert torch.equal(_logits(spos.from_pretrained(out), x), _logits(nets[weights], x))  # what it says it holds
    assert ("EMA weights" in (out / "README.md").read_text()) == (weights == "ema")
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["weights"] == weights
    again = tmp_path / "again"  # a folder exported from the folder keeps saying so
    assert main(["export", str(out), "--format", "hf", "--no-measure", "--output", str(again)]) == 0
    assert json.loads((again / CONFIG_NAME).read_text())["weights"] == weights


def test_shared_supernet_weights_are_stored_once_and_searchable(tmp_path, digits_run):
    space = get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)
    supernet = SuperNet(space, entangled_kernels=True, aligned_choices=True)
    source = checkpoint.save_atomic(checkpoint.supernet_payload(supernet, config=digits_run),  # its hold-out: searchable
                                    tmp_path / "supernet.pt")
    assert main(["export", str(source), "--format", "hf", "--output", str(tmp_path / "shared")]) == 0
    data = load_folder(tmp_path / "shared")
    loaded = checkpoint.build_model(data)
    assert loaded.entangled_kernels and loaded.aligned_choices
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), supernet.state_dict().values()))
    with safe_open(str(tmp_path / "shared" / WEIGHTS_NAME), framework="pt") as stored:  # shared kernels once
        assert len(list(stored.keys())) + len(json.loads(stored.metadata()[ALIASES_KEY])) == len(supernet.state_dict())
        assert json.loads(stored.metadata()[ALIASES_KEY])
    assert main(["search", "--supernet", str(tmp_path / "shared"), "--data", "digits", "--holdout", "0.2",
                 "--population", "4", "--generations", "1", "--bn-batches", "1", "--eval-batches", "1",
                 "--no-progress", "--output", str(tmp_path / "search")]) == 0
    assert (tmp_path / "search" / "best.json").is_file()


@pytest.mark.parametrize("damage, message", [
    ({"library": "other"}, "not a spos model config"),
    ({"kind": "mystery"}, "kind must be one of"),
    ({"space": None}, "space is None, not an object"),
])
def test_bad_configs_are_one_line_errors(folder, tmp_path, damage, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes())
    (bad / CONFIG_NAME).write_text(json.dumps({**json.loads((folder / CONFIG_NAME).read_text()), **damage}))
    with pytest.raises(UserError, match=message):
        load_folder(bad)


def test_damaged_weights_are_refused(folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / CONFIG_NAME).write_text((folder / CONFIG_NAME).read_text())
    (bad / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:100])
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_folder(bad)


# -- the Hub, through a local stand-in -------------------------------------------------------------

class _StandInHub(BaseHTTPRequestHandler):
    """The few endpoints create_repo, create_commit (regular uploads) and hf_hub_download use."""

    files: dict[tuple[str, str], bytes] = {}
    commit = "1" * 40

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, send_body: bool = True):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _json(self, data):
        self._reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["api", "repos", "create"]:
            request = json.loads(body)
            return self._json({"url": f"http://{self.headers['Host']}/{request['organization']}/{request['name']}"})
        if parts[:2] == ["api", "validate-yaml"]:  # the model card's header, checked before a commit
            return self._json({"errors": [], "warnings": []})
        repo = "/".join(parts[2:4])
        if parts[4] == "preupload":
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in json.loads(body)["files"]]})
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.files[(repo, item["value"]["path"])] = base64.b64decode(item["value"]["content"])
        self._json({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{self.commit}",
                    "commitOid": self.commit, "pullRequestUrl": None})

    def _serve(self, send_body: bool):
        parts = self.path.split("?")[0].strip("/").split("/")
        key = ("/".join(parts[:2]), "/".join(parts[4:]))  # USER/NAME/resolve/REVISION/FILE
        if key not in self.files:
            return self._reply(404, b"{}", {"X-Error-Code": "EntryNotFound"}, send_body)
        data = self.files[key]
        self._reply(200, data, {"X-Repo-Commit": self.commit, "ETag": f'"{len(data)}-{hash(data) & 0xffff}"'},
                    send_body)

    def do_HEAD(self):
        self._serve(False)

    def do_GET(self):
        self._serve(True)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # never ~/.cache
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in")
    yield _StandInHub.files
    server.shutdown()
    server.server_close()
    _StandInHub.files.clear()


def test_push_a_run_and_load_it_back_by_repository_id(run, hub, tmp_path, capsys):
    assert main(["hub", "push", str(run), "--repo", "me/digits-net"]) == 0
    assert "pushed to http://127.0.0.1" in capsys.readouterr().out
    assert {path for repo, path in hub if repo == "me/digits-net"} >= {CONFIG_NAME, WEIGHTS_NAME, "README.md"}
    model = spos.from_pretrained("me/digits-net", cache_dir=tmp_path / "cache")
    x = build_datasets("digits").val.images[:8]
    assert torch.equal(_logits(model, x), _logits(checkpoint.load_model(run / "best.pt"), x))
    assert model.pretrained_config["input"]["mean"] == [0.3053]
    assert main(["eval", "hf://me/digits-net", "--json"]) == 0  # any command reads hf://USER/NAME
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(
        model.pretrained_config["measured"]["top1"])


def test_hub_errors_are_one_line(hub, tmp_path, capsys):
    with pytest.raises(UserError, match="the Hub could not give"):
        spos.from_pretrained("me/absent", cache_dir=tmp_path)
    with pytest.raises(UserError, match="neither a folder here nor a Hub repository id"):
        spos.from_pretrained("no such folder", cache_dir=tmp_path)
    assert main(["hub", "push", str(tmp_path), "--repo", "me/x"]) == 2
    assert "is not a spos model folder" in capsys.readouterr().err
