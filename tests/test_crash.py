"""Crash safety: a simulated death after every I/O call of every write path, and real SIGKILL loops.

Simulated crashes (SQLite's crash tests, ALICE's crash states): the scenario in
``tests/_faults.py`` runs every write path (create, update, delete, batch, compaction,
passphrase change, writes after it, automatic compaction) with the process "dying" after
call N, for every N. Each crash image (the page cache as left, and the OS-crash variants
where unsynced data or directory entries are lost or zeroed) must open with every
acknowledged change and nothing partial: exactly the state before the interrupted step
or exactly the state after it. The vault must then take a new write and reopen.

Real crashes: a child process writes (printing each acknowledged op) and is SIGKILLed at
a random instant after its first acknowledged op, 200 times per run on a fork()ed child
and 30 times on a fresh interpreter; every acknowledged op must be present and nothing
else but the op in flight.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import vault
from tests._faults import (
    FAST,
    NAME,
    PASSPHRASE,
    SCENARIO,
    Died,
    FaultIO,
    Image,
    KillModel,
    SeededRng,
    State,
    StepClock,
    check_after_kill,
    dry_run,
    dump,
    freeze,
    kill_child,
    kill_passphrase,
    open_seeded,
    parse_kill_output,
    record_figure,
    seed_vault,
)

KILLS = int(os.environ.get("CBKV_KILLS", "200"))
SUBPROCESS_KILLS = int(os.environ.get("CBKV_SUBPROCESS_KILLS", "30"))


def _open_any(path: Path, passphrases: list[str]) -> tuple[vault.Vault, str]:
    wrong = 0
    for p in dict.fromkeys(passphrases):
        try:
            return vault.open(path, p), p
        except vault.WrongPassphraseError:
            wrong += 1
    raise AssertionError("neither the old nor the new passphrase opens the vault")


def _check_image(image: Image, where: Path, allowed: list[State], passphrases: list[str], label: str) -> str:
    """The image opens, holds one allowed state exactly, takes a new write and reopens. Returns the passphrase."""
    image.restore(where)
    path = where / NAME
    v, used = _open_any(path, passphrases)
    try:
        got = dump(v)
        assert freeze(got) in {freeze(a) for a in allowed}, f"{label}: state the vault never had"
        # The crashed vault must also be writable: the torn tail is cut, a stale key slot erased.
        new = v.secret.create(name="after-crash", value="after-crash-value")
        expected = dict(got)
        expected[new.id] = v.secret.fetch(new.id).to_dict(reveal=True)
    finally:
        v.close()
    with vault.open(path, used) as again:
        assert freeze(dump(again)) == freeze(expected), f"{label}: write after crash not persisted"
    return used


def test_crash_after_every_io_call_of_every_write_path(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    seed_vault(base / NAME)
    bounds, states, calls = dry_run(base, tmp_path / "dry")
    total = bounds[-1][1]
    assert total >= 30, calls  # sanity: the scenario really does I/O
    points = 0
    images = 0
    kinds: dict[str, int] = {}
    per_step: dict[str, int] = {}
    import shutil

    for n in range(1, total + 1):
        j = next(i for i, (lo, hi) in enumerate(bounds) if lo < n <= hi)
        step = SCENARIO[j]
        before_pass = PASSPHRASE if j == 0 else SCENARIO[j - 1].passphrase
        work = tmp_path / f"run{n}"
        shutil.copytree(base, work)
        io = FaultIO(die_at=n, directory=work, armed=False)
        v = open_seeded(work / NAME, io)
        io.arm()
        s: dict[str, Any] = {}
        with pytest.raises(Died):
            for st in SCENARIO:
                st.run(v, s)
        io.bury()
        assert io.calls == calls[:n], "the replay diverged from the dry run"
        points += 1
        per_step[step.name] = per_step.get(step.name, 0) + 1
        for k, image in enumerate(io.images):
            label = f"died after call {n} ({calls[n - 1]}) in step {step.name}, image {image.kind}"
            _check_image(
                image, tmp_path / f"img{n}-{k}", [states[j], states[j + 1]], [before_pass, step.passphrase], label
            )
            images += 1
            kinds[image.kind] = kinds.get(image.kind, 0) + 1
        shutil.rmtree(work)
    assert set(per_step) == {st.name for st in SCENARIO}
    record_figure("crash_points", points, images=images, image_kinds=kinds, per_step=per_step)


def _init_images(tmp_path: Path, nested: bool) -> tuple[int, int]:
    points = images = 0
    n = 0
    while True:
        n += 1
        d = tmp_path / f"init{int(nested)}-{n}"
        d.mkdir()
        target_dir = d / "sub" if nested else d
        # With a missing parent, the directory itself is new: judge the live tree (process image).
        io = FaultIO(die_at=n, directory=None if nested else d)
        try:
            v = vault.init(target_dir / NAME, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(3), _io=io)
        except Died:
            pass
        else:
            io.die_at = None  # init returned: the run had fewer than n calls
            v.close()
            return points, images
        io.bury()
        points += 1
        shots = io.images or [Image("process", {p.name: p.read_bytes() for p in target_dir.glob("*") if p.is_file()})]
        for k, image in enumerate(shots):
            where = tmp_path / f"initimg{int(nested)}-{n}-{k}"
            image.restore(where)
            if NAME in image.files:
                # Nothing partial: if a vault exists, it is the complete empty vault.
                with vault.open(where / NAME, PASSPHRASE) as v2:
                    assert len(v2) == 0
            else:
                # No vault yet: init must succeed there (a leftover temp must not block it).
                vault.init(where / NAME, PASSPHRASE, kdf=FAST).close()
            images += 1


def test_crash_at_every_io_call_of_init(tmp_path: Path) -> None:
    p1, i1 = _init_images(tmp_path, nested=False)
    p2, i2 = _init_images(tmp_path, nested=True)
    assert p1 >= 8 and p2 > p1  # the nested case adds the mkdir
    record_figure("crash_points_init", p1 + p2, images=i1 + i2)


# --- real SIGKILL ------------------------------------------------------------------------------


def _new_kill_vault(path: Path) -> None:
    vault.init(path, PASSPHRASE, kdf=FAST).close()


def _temps(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]


#: How long a child may take to acknowledge its first write. Generous on purpose: a loaded
#: machine only delays that write, and a child that cannot write at all fails the round anyway.
FIRST_ACK_WAIT = 120.0


def _read_until_first_ack(fd: int) -> bytes:
    """The child's output up to its first acknowledgement (or up to its exit, if it died first).

    Each round kills the child only after this, so every kill lands while writes are under way
    and every round has work to check, however slowly the child was scheduled.
    """
    got = b""
    deadline = time.monotonic() + FIRST_ACK_WAIT
    # The first line is always a "B" line, so an acknowledgement always follows a newline.
    while b"\nA " not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"the child acknowledged no write within {FIRST_ACK_WAIT:g} s"
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            continue
        # Raw reads only: a buffered reader would hold bytes that the later reads never see.
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # the child exited on its own; its exit status says why
        got += chunk
    return got


def _read_rest(fd: int, got: bytes) -> bytes:
    while chunk := os.read(fd, 65536):
        got += chunk
    return got


def _run_fork_round(
    path: Path, model: KillModel, seed: int, delay: float
) -> tuple[KillModel, dict[str, Any] | None, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its coverage is the parent's code anyway
        code = 1
        try:
            os.close(r)
            kill_child(path, model.passphrase_index, seed, w, f"r{seed}")
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    os.close(w)
    try:
        got = _read_until_first_ack(r)
        time.sleep(delay)
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    got = _read_rest(r, got)
    os.close(r)
    # The child must have been killed, not have died of an error of its own.
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    return parse_kill_output(got.decode(), model)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_sigkill_loop_fork(tmp_path: Path) -> None:
    path = tmp_path / NAME
    _new_kill_vault(path)
    model = KillModel()
    rnd = random.Random(20261127)
    started = time.perf_counter()
    cpu = time.process_time()
    acked_total = inflight_total = 0
    for k in range(KILLS):
        model, inflight, acked = _run_fork_round(path, model, 1000 + k, rnd.uniform(0.0, 0.03))
        assert acked >= 1, f"round {k}: killed before its first acknowledged write"
        model = check_after_kill(path, model, inflight)
        acked_total += acked
        inflight_total += inflight is not None
    with vault.open(path, kill_passphrase(model.passphrase_index)) as v:
        v.compact()
    assert _temps(path) == []
    wall = time.perf_counter() - started
    record_figure(
        "kills_fork",
        KILLS,
        acknowledged_ops=acked_total,
        killed_mid_op=inflight_total,
        wall_seconds=round(wall, 2),
        parent_cpu_seconds=round(time.process_time() - cpu, 2),
    )


def test_sigkill_loop_subprocess(tmp_path: Path) -> None:
    """Issue 2's loop: a separate interpreter writes and prints each acknowledged id; killed 30+ times."""
    path = tmp_path / NAME
    _new_kill_vault(path)
    model = KillModel()
    rnd = random.Random(7)
    root = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    acked_total = 0
    for k in range(SUBPROCESS_KILLS):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests._faults import kill_child_main; kill_child_main()",
                str(path),
                str(model.passphrase_index),
                str(k),
                f"p{k}",
            ],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        out_fd = proc.stdout.fileno()
        try:
            got = _read_until_first_ack(out_fd)
            time.sleep(rnd.uniform(0.0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        got = _read_rest(out_fd, got)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        model, inflight, acked = parse_kill_output(got.decode(), model)
        assert acked >= 1, f"round {k}: killed before its first acknowledged write"
        model = check_after_kill(path, model, inflight)
        acked_total += acked
    record_figure(
        "kills_subprocess",
        SUBPROCESS_KILLS,
        acknowledged_ops=acked_total,
        wall_seconds=round(time.perf_counter() - started, 2),
    )
