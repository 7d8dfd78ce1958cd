"""Training under torchrun (DDP) equals training in one process, and a distributed run fails cleanly.

In this process (fast): the batch split, torchrun's variables and the devices `from_env` accepts,
gradient accumulation equal to one big batch, errors as one line. In subprocesses, on the CPU with
gloo (each process on one thread, as torchrun sets it): 2 processes train the smoke model to the
same weights as 1 process at the same global batch (to 1e-5), only rank 0 writes and logs; when one
process is killed mid-run the whole job ends, and it resumes with 1 or 2 processes to the same end;
a batch that 2 processes cannot share is one line from rank 0.

Run: pytest tests/test_distributed.py
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gptlib import distributed
from gptlib.checkpoint import load_checkpoint
from gptlib.cli import main
from gptlib.config import GPTConfig, TrainConfig
from gptlib.distributed import SINGLE, Distributed, from_env, split_batch
from gptlib.errors import ConfigError, DeviceError, DistributedError
from gptlib.model import GPT
from gptlib.training import train

from helpers import wait_for

TIMEOUT = 240  # seconds for one launch; generous, the machine running the tests may be busy
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what the `torchrun` command runs


def _gloo_missing() -> str | None:
    if not torch.distributed.is_available():
        return "this torch was built without torch.distributed, so there is no torchrun"
    if not torch.distributed.is_gloo_available():
        return "this torch has no gloo backend, which torchrun on a CPU needs"
    if sys.platform == "win32":
        return "the kill tests use POSIX signals"
    return None


needs_torchrun = pytest.mark.skipif(_gloo_missing() is not None, reason=str(_gloo_missing()))
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID")


@pytest.fixture
def no_torchrun(monkeypatch):
    """An environment without torchrun's variables; the test sets the ones it needs."""
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- in this process ---------------------------------------------------------------------------


def test_the_batch_splits_evenly_or_not_at_all():
    assert split_batch(32, 1, 1) == 32
    assert split_batch(32, 2, 1) == 16
    assert split_batch(32, 2, 4) == 4
    with pytest.raises(ConfigError, match=r"batch_size 4 cannot be split evenly into 3 processes x 1 "
                                          r"micro-batches \(3 parts\).*multiple of 3.*--nproc_per_node"):
        split_batch(4, 3, 1)
    with pytest.raises(ConfigError, match="grad_accum must be a positive integer"):
        split_batch(4, 1, 0)


def test_each_rank_takes_its_own_rows_and_together_all_of_them():
    batch = torch.arange(24).view(8, 3)  # (B,T)
    shares = [Distributed(rank=r, world_size=4, backend="gloo").my_rows(batch) for r in range(4)]
    assert all(s.shape == (2, 3) for s in shares)
    assert torch.equal(torch.cat(shares), batch)
    assert SINGLE.my_rows(batch) is not None and torch.equal(SINGLE.my_rows(batch), batch)


def test_without_torchrun_it_is_one_process_on_the_usual_device(no_torchrun):
    dist = from_env("cpu")
    assert (dist.active, dist.rank, dist.world_size, dist.is_main) == (False, 0, 1, True)
    assert dist.device == torch.device("cpu")


def test_torchrun_variables_give_rank_world_size_and_backend(no_torchrun):
    for name, value in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="localhost",
                            MASTER_PORT="29500").items():
        no_torchrun.setenv(name, value)
    dist = from_env("cpu")
    assert (dist.rank, dist.world_size, dist.local_rank, dist.backend, dist.is_main) == (1, 2, 1, "gloo", False)
    if not torch.cuda.is_available():
        assert from_env("auto").backend == "gloo"  # auto without a GPU: the CPU, never MPS


def test_rank_set_by_hand_without_master_addr_says_what_to_set(no_torchrun):
    no_torchrun.setenv("RANK", "0")
    no_torchrun.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match=r"RANK and WORLD_SIZE are set.*MASTER_ADDR, MASTER_PORT "
                                               r"are not: start the run with torchrun"):
        from_env("cpu")
    no_torchrun.setenv("MASTER_ADDR", "localhost")
    no_torchrun.setenv("MASTER_PORT", "29500")
    no_torchrun.setenv("RANK", "two")
    with pytest.raises(DistributedError, match="RANK='two' is not an integer"):
        from_env("cpu")
    no_torchrun.setenv("RANK", "2")
    with pytest.raises(DistributedError, match="0 <= RANK < WORLD_SIZE"):
        from_env("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA GPUs")
def test_nccl_without_gpus_and_mps_are_refused(no_torchrun):
    for name, value in dict(RANK="0", WORLD_SIZE="2", MASTER_ADDR="localhost", MASTER_PORT="29500").items():
        no_torchrun.setenv(name, value)
    with pytest.raises(DeviceError, match="trains over NCCL, which needs CUDA GPUs.*use --device cpu"):
        from_env("cuda")
    with pytest.raises(DeviceError, match="CUDA GPUs \\(NCCL\\).*or on CPUs \\(gloo\\)"):
        from_env("mps")


def test_distributed_mistakes_are_one_line_on_the_command_line(no_torchrun, tmp_path, capsys):
    for name, value in dict(RANK="0", WORLD_SIZE="2").items():
        no_torchrun.setenv(name, value)
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "a"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: RANK and WORLD_SIZE are set")
    no_torchrun.delenv("RANK")
    no_torchrun.delenv("WORLD_SIZE")
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "b"), "--grad-accum", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size 4 cannot be split evenly into 3 micro-batches" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_rank_other_than_0_prefixes_its_error(no_torchrun, capsys):
    distributed.report_error("error: x")
    no_torchrun.setenv("RANK", "1")  # started by hand (no torchrun to wait for): prints at once
    distributed.report_error("error: y")
    assert capsys.readouterr().err == "error: x\n[rank 1] error: y\n"


@pytest.mark.parametrize("grad_accum", [2, 4])
def test_gradient_accumulation_equals_one_big_batch(data, tokenizer, grad_accum):
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1,
                       dropout=0.0)
    train_config = TrainConfig(batch_size=8, max_iters=15, eval_interval=15, eval_iters=1, learning_rate=3e-3)
    n = int(0.9 * len(data))
    weights = []
    for accum in (1, grad_accum):
        torch.manual_seed(0)
        model = GPT(config)
        train(model, data[:n], data[n:], train_config, block_size=8, progress=False, grad_accum=accum)
        weights.append(model.state_dict())
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-5, rtol=0, msg=name)


# --- under torchrun, in subprocesses ------------------------------------------------------------


def child_env() -> dict:
    """This environment (GPTLIB_DATA included) without torchrun's variables, torch on one thread."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    return {**env, "OMP_NUM_THREADS": "1"}


def train_args(out: Path, data_args: list[str], *more: str) -> list[str]:
    return ["train", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--max-iters", "200",
            "--eval-interval", "20", "--sample-tokens", "20", *data_args, *more]


def one_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptlib", *args], capture_output=True, text=True,
                          env=child_env(), timeout=TIMEOUT)


def torchrun(nproc: int, *args: str, logs: Path | None = None):
    """Run the job to its end; or, with ``logs`` (a folder for its output), start it and return."""
    command = [*TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", "-m", "gptlib", *args]
    if logs is None:
        return subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=TIMEOUT)
    with open(logs / "stdout.txt", "w") as out, open(logs / "stderr.txt", "w") as err:
        # its own session, so that the test can kill torchrun and nothing else
        return subprocess.Popen(command, stdout=out, stderr=err, env=child_env(), start_new_session=True)


def assert_same_weights(out: Path, reference: Path) -> None:
    """Same steps, the same losses and weights to 1e-5, in last.pt and best.pt."""
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(out / name), load_checkpoint(reference / name)
        assert a.step == b.step, name
        assert a.extra["history"]["step"] == b.extra["history"]["step"], name
        for key in ("train_loss", "val_loss"):
            torch.testing.assert_close(a.extra["history"][key], b.extra["history"][key], atol=1e-5, rtol=0)
        for k, tensor in b.model_state.items():
            torch.testing.assert_close(a.model_state[k], tensor, atol=1e-5, rtol=0, msg=f"{name}: {k}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_args):
    """One process, uninterrupted: what every distributed run must end up equal to."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = one_process(*train_args(out, data_args, "--batch-size", "8"))
    assert result.returncode == 0, result.stderr
    return out


@needs_torchrun
def test_two_processes_train_what_one_does_and_only_rank_0_writes(tmp_path, straight, data_args):
    out = tmp_path / "run"
    # global batch 8: each of the 2 processes trains 4 rows, in 2 micro-batches of 2
    result = torchrun(2, *train_args(out, data_args, "--batch-size", "8", "--grad-accum", "2"))
    assert result.returncode == 0, result.stderr
    assert_same_weights(out, straight)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]  # one writer, no leftovers
    log = result.stdout
    assert log.count("world size 2 (gloo): each process trains 4 of the 8 rows of every batch in 2 "
                     "micro-batches of 2\n") == 1
    assert [int(s) for s in re.findall(r"step +(\d+):", log)] == list(range(20, 201, 20))  # rank 0 only
    assert log.count("preset smoke") == 1 and log.count("best val loss") == 1
    assert "Traceback" not in result.stderr


def job_processes(proc: subprocess.Popen) -> dict[int, int]:
    """The job's worker processes that torchrun (``proc``) started, pid -> RANK."""
    workers = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == proc.pid:
                env = (stat.parent / "environ").read_bytes().split(b"\0")
                rank = next(v for v in env if v.startswith(b"RANK="))
                workers[int(stat.parent.name)] = int(rank.split(b"=")[1])
        except (OSError, IndexError, ValueError, StopIteration):
            continue  # gone meanwhile, or not ours
    return workers


@needs_torchrun
def test_a_job_that_loses_a_process_ends_and_resumes_with_one_or_two(tmp_path, straight, data_args):
    out = tmp_path / "run"
    proc = torchrun(2, *train_args(out, data_args, "--batch-size", "8"), logs=tmp_path)
    try:
        wait_for((out / "last.pt").is_file, proc, "the first checkpoint", TIMEOUT)
        workers = job_processes(proc)
        assert sorted(workers.values()) == [0, 1]
        # Rank 1 dies mid-run: rank 0 would wait for it at the next all-reduce; torchrun must end the job.
        os.kill(next(pid for pid, rank in workers.items() if rank == 1), signal.SIGKILL)
        started = time.monotonic()
        proc.wait(timeout=TIMEOUT)
        assert proc.returncode != 0
        assert time.monotonic() - started < 60, "the job took too long to end after a process died"
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a process was left running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in job_processes(proc):
                os.killpg(pid, signal.SIGKILL)  # each worker runs in a session of its own
    killed_at = load_checkpoint(out / "last.pt").step
    assert 20 <= killed_at < 200, "the job was meant to be killed mid-run"

    other = tmp_path / "copy"
    other.mkdir()
    for path in out.glob("*.pt"):  # a copy, resumed by one process instead of two
        (other / path.name).write_bytes(path.read_bytes())
    resumed = torchrun(2, "train", "--resume", "--out", str(out), "--device", "cpu", "--sample-tokens", "0",
                       *data_args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out / 'last.pt'} at step {killed_at} of 200" in resumed.stdout
    assert "world size 2" in resumed.stdout
    assert_same_weights(out, straight)
    resumed = one_process("train", "--resume", "--out", str(other), "--device", "cpu", "--sample-tokens", "0",
                          *data_args)
    assert resumed.returncode == 0, resumed.stderr
    assert "world size" not in resumed.stdout
    assert_same_weights(other, straight)


@needs_torchrun
def test_a_batch_the_processes_cannot_share_is_one_line_from_rank_0(tmp_path, data_args):
    result = torchrun(2, *train_args(tmp_path / "run", data_args, "--batch-size", "5"))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == ["error: batch_size 5 cannot be split evenly into 2 processes x 1 micro-batches "
                      "(2 parts): use a batch_size that is a multiple of 2, or another --nproc_per_node or "
                      "--grad-accum"], result.stderr
    assert not (tmp_path / "run").exists()
