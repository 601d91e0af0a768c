"""predict on Dask workers: a real scheduler and workers on 127.0.0.1, started and stopped here.

Outputs equal serial predict bit for bit; a worker SIGKILLed mid-run loses nothing; a broken file
among good ones is reported as in serial mode; --resume completes leftovers; the options are
validated in one line; the SLURM job script; and without the options nothing imports Dask.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S

pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from livecell_seg.cli import main  # noqa: E402
from livecell_seg.data import sample_paths  # noqa: E402
from livecell_seg.inference.distributed import RECOVERED, ClusterOptions, run_images, worker_stats  # noqa: E402
from livecell_seg.inference.predict import PredictOptions  # noqa: E402
from livecell_seg.inference.runner import predict_paths  # noqa: E402
from livecell_seg.io import _HOST, list_images, read_json, read_labels  # noqa: E402

DASK_MODULES = ("dask", "distributed", "dask_jobqueue")
#: SLURMCluster's own scheduler in the tests: loopback only, dashboard on a free port
LOOPBACK_SCHEDULER = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A Dask scheduler and 2 single-threaded workers (with nannies) as separate processes on
    127.0.0.1; yields the scheduler address; everything is stopped at the end."""
    tmp = tmp_path_factory.mktemp("dask")
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    common = ["--no-dashboard"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--scheduler-file", str(sched_file), *common],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
    ]
    try:
        deadline = time.monotonic() + HANG_S
        while not sched_file.is_file():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sched_file)]
                    + ["--nthreads", "1", "--host", "127.0.0.1", "--name", f"w{i}", *common],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=tmp,  # not the test's cwd: paths must reach the workers as absolute paths
                )
            )
        with distributed.Client(scheduler_file=str(sched_file)) as client:
            client.wait_for_workers(2, timeout=HANG_S)  # generous: the CPU may be shared
            address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _client(address: str, n_workers: int = 2):
    client = distributed.Client(address, timeout=f"{HANG_S}s")
    client.wait_for_workers(n_workers, timeout=HANG_S)  # a killed worker's nanny restarts it
    return client


@pytest.fixture(scope="module")
def sample_images() -> list[Path]:
    return list_images(sample_paths()[1])


def _content(path: Path) -> object:
    """The file's bytes; for a zip, its members' bytes (a zip also stores when it was written)."""
    if path.suffix == ".zip":
        import zipfile

        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    return path.read_bytes()


def _outputs(folder: Path) -> dict[str, object]:
    return {str(p.relative_to(folder)): _content(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dask_outputs_equal_serial_and_a_broken_file_is_reported_as_serially(
    tmp_path, dask_cluster, sample_images, capsys, monkeypatch
):
    """Bundled model, 5 real images + 1 broken file, every output kind: the same files, byte for
    byte (same thread count), the same one-line report and exit code; one model load per worker."""
    inp = tmp_path / "in"
    inp.mkdir()
    for p in sample_images:
        shutil.copy(p, inp / p.name)
    (inp / "broken.tif").write_bytes(b"<html>404 Not Found</html>")
    monkeypatch.chdir(tmp_path)  # relative paths on the command line, as users type them
    extra = ["--save-maps", "--overlay", "--csv", "--rois", "--geojson", "--threads", "1", "-q"]
    assert main(["predict", "-i", "in", "--out", "serial", *extra]) == 1
    serial_err = capsys.readouterr().err

    with _client(dask_cluster) as client:
        before = client.run(worker_stats)
        rc = main(["predict", "-i", "in", "--out", "dask", *extra, "--scheduler", dask_cluster])
        after = client.run(worker_stats)
    dask_err = capsys.readouterr().err
    assert rc == 1
    skipped = [line for line in serial_err.splitlines() if "skipped" in line]
    assert skipped == [line for line in dask_err.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "in/broken.tif" in skipped[0] and "Traceback" not in dask_err
    assert "1 of 6 file(s) failed" in dask_err

    serial, dask = _outputs(tmp_path / "serial"), _outputs(tmp_path / "dask")
    # labels, maps, overlays, csv, rois, geojson per image (what --resume checks) + maps.json and
    # the output names (equal: Dask names the files exactly as serial predict does)
    opts = PredictOptions(save_maps=True, overlay=True, measurements=True, rois=True, geojson=True)
    targets = {str(t) for p in sample_images for t in opts.targets(Path(), p.stem)}
    # and summary.csv (one row per image, the broken file's failure included: equal too)
    assert set(serial) == targets | {"maps/maps.json", "predict_names.json", "summary.csv"}
    assert len(targets) == 5 * 6
    assert serial.keys() == dask.keys()
    assert [k for k in serial if serial[k] != dask[k]] == []
    assert max(read_labels(tmp_path / "dask" / f"{p.stem}.tif").max() for p in sample_images) > 100
    # the model was loaded at most once per worker (6 single-image tasks over 2 workers)
    assert all(after[w]["model_loads"] - before[w]["model_loads"] <= 1 for w in after)


def test_a_worker_killed_mid_run_loses_nothing_and_resume_completes_leftovers(
    tmp_path, dask_cluster, sample_images
):
    """10 images in tasks of 2 on 2 workers; a worker process gets SIGKILL halfway through a task:
    every image still completes, equal to serial; files finished before the kill (the killed
    task's first image too) are not written again; no temporary file is left behind."""
    inp = tmp_path / "in"
    inp.mkdir()
    for k in range(2):
        for p in sample_images:
            os.link(p, inp / f"{p.stem}_copy{k}.tif")
    paths = list_images(inp)
    assert len(paths) == 10
    ref = tmp_path / "serial"
    predict_paths(sample_images, ref, num_threads=1, progress=False)
    out = tmp_path / "dask"
    killed: dict[str, object] = {}

    def kill_a_worker_halfway_through_a_task(outcome, client) -> None:
        """SIGKILL a worker process that has written the first image of its task (key ``...-i``:
        images ``2i`` and ``2i + 1``) and is segmenting the second."""
        if killed:
            return
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                for key in keys:
                    i = int(str(key).rsplit("-", 1)[1])
                    first, second = (out / f"{p.stem}.tif" for p in paths[2 * i : 2 * i + 2])
                    if first.is_file() and not second.is_file():
                        done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
                        pid = client.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.update(worker=worker, pid=pid, first=first.name, done=done)
                        return
            time.sleep(0.02)
        pytest.fail("no worker was caught between the two images of a task")

    with _client(dask_cluster):
        pass
    summary = run_images(
        paths,
        out,
        ClusterOptions(scheduler=dask_cluster, images_per_task=2),
        progress=False,
        on_outcome=kill_a_worker_halfway_through_a_task,
    )
    assert killed and killed["first"] in killed["done"]
    with _client(dask_cluster) as client:  # the restarted worker is back; by default 1 torch thread each
        stats = client.run(worker_stats)
    assert killed["pid"] not in {s["pid"] for s in stats.values()}
    assert {s["torch_threads"] for s in stats.values() if s["model_loads"]} == {1}
    assert summary.ok and sorted(summary.processed) == paths
    assert sum(summary.workers.values()) == 10
    # the killed task was re-run elsewhere; its first image was found written, not segmented again
    assert summary.workers.get(RECOVERED, 0) >= 1
    for p in paths:
        original = p.stem.rsplit("_copy", 1)[0]
        np.testing.assert_array_equal(
            read_labels(out / f"{p.stem}.tif"), read_labels(ref / f"{original}.tif")
        )
    # finished before the kill: not written again
    assert {n: (out / n).stat().st_mtime_ns for n in killed["done"]} == killed["done"]
    assert not list(out.glob(".*"))  # no temporary .part file of the killed worker is left

    # --resume after an interrupted run: only the missing images are segmented
    for p in paths[:3]:
        (out / f"{p.stem}.tif").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    again = run_images(paths, out, ClusterOptions(scheduler=dask_cluster), resume=True, progress=False)
    assert again.processed == paths[:3] and len(again.skipped_existing) == 7
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept
    assert len(list(out.glob("*.tif"))) == 10


def test_dask_keeps_the_output_names_of_earlier_runs_and_sweeps_stale_parts(
    tmp_path, dask_cluster, sample_images
):
    """An earlier run wrote ``img.tif`` for ``b/img.tif``; a Dask ``--resume`` run over ``a/`` and
    ``b/`` keeps that name (predict_names.json) and gives ``a/img.tif`` (sorted first) ``img-2``,
    as serial predict does: b is skipped, a segmented. A ``.part`` file left by a killed earlier
    run (a dead process on this host) is swept at the start, as serially."""
    for d, img in (("a", sample_images[0]), ("b", sample_images[1])):
        (tmp_path / d).mkdir()
        shutil.copy(img, tmp_path / d / "img.tif")
    a, b = tmp_path / "a" / "img.tif", tmp_path / "b" / "img.tif"
    out = tmp_path / "out"
    predict_paths([tmp_path / "b"], out, num_threads=1, progress=False)
    written = (out / "img.tif").stat().st_mtime_ns
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".img.tif.{_HOST}-{dead.pid}-x1y2z3.part"  # not a target of the Dask run
    stale.write_bytes(b"half a file")
    with _client(dask_cluster):
        pass
    summary = predict_paths(
        [tmp_path / "a", tmp_path / "b"],
        out,
        resume=True,
        progress=False,
        cluster=ClusterOptions(scheduler=dask_cluster),
    )
    assert summary.skipped_existing == [b] and summary.processed == [a]
    assert (out / "img.tif").stat().st_mtime_ns == written
    labels = read_labels(out / "img-2.tif")
    assert len(np.unique(labels[labels > 0])) == summary.n_cells[str(a)] > 0
    assert read_json(out / "predict_names.json") == {str(a.resolve()): "img-2", str(b.resolve()): "img"}
    assert not stale.exists()


def test_dask_refuses_outputs_over_inputs_before_contacting_the_scheduler(tmp_path, sample_images, capsys):
    """The output-overwrites-input refusal comes before any Dask work and writes nothing."""
    import dask

    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(sample_images[0], d / "x.tif")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc = main(["predict", "-i", str(d / "x.tif"), "--out", str(d), "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "would be overwritten by its own output" in err and len(err.splitlines()) == 1, err
    assert [p.name for p in d.iterdir()] == ["x.tif"]


def test_local_workers_from_the_command_line(tmp_path, sample_images, capsys):
    """--local-workers starts its own cluster (and stops it); the client prints the summary."""
    out = tmp_path / "o"
    argv = ["predict", "-i", str(sample_images[0]), "--out", str(out), "--threads", "1"]
    assert main([*argv, "--local-workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "predict: 1 image(s) segmented" in printed
    assert "dask: 1 image(s) in" in printed and "images/s) on 1 worker(s): tcp://127.0.0.1:" in printed
    assert main([*argv, "--out", str(tmp_path / "serial"), "-q"]) == 0
    for p in sample_images[:1]:
        assert (out / f"{p.stem}.tif").read_bytes() == (tmp_path / "serial" / f"{p.stem}.tif").read_bytes()


def test_timecourse_on_local_workers_equals_serial(tmp_path, sample_images, capsys):
    """`timecourse --local-workers 1` segments its frames on Dask (predict's code path) and gives
    the same label files and the same tables as the serial run; the client prints the summary."""
    import tifffile

    from livecell_seg.io import read_image

    src = read_image(sample_images[0])
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, (y, x) in enumerate(((0, 0), (0, 200), (200, 0))):
        tifffile.imwrite(frames / f"MCF7_Phase_G4_2_00d{4 * k:02d}h00m_1.tif", src[y : y + 192, x : x + 256])
    # --quality: the estimate made on the workers lands in per_image.csv and summary.csv as serially
    argv = ["timecourse", "-i", str(frames), "--threads", "1", "--no-report", "--quality"]
    assert main([*argv, "--out", str(tmp_path / "serial"), "-q"]) == 0
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "dask"), "--local-workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "timecourse: 3 image(s), 1 well(s)" in printed
    assert "dask: 3 image(s) in" in printed and "on 1 worker(s): tcp://127.0.0.1:" in printed

    serial, dask = tmp_path / "serial", tmp_path / "dask"
    for name in ("per_image.csv", "per_well_time.csv", "growth.csv"):  # (per_image names the label file)
        assert (dask / name).read_text() == (serial / name).read_text().replace(str(serial), str(dask)), name
    seg_s, seg_d = _outputs(serial / "segmentation"), _outputs(dask / "segmentation")
    assert (
        sorted(seg_s)
        == sorted(seg_d)
        == sorted(
            [f"{p.stem}.tif" for p in frames.iterdir()]
            + ["correction_order.csv", "predict_names.json", "summary.csv"]
        )
    )
    qualities = [r["quality"] for r in csv.DictReader(io.StringIO((dask / "per_image.csv").read_text()))]
    assert len(qualities) == 3 and all(0 <= float(q) <= 1 for q in qualities)
    assert [k for k in seg_s if seg_s[k] != seg_d[k]] == []
    assert min(read_labels(dask / "segmentation" / f"{p.stem}.tif").max() for p in frames.iterdir()) > 10
    info = read_json(dask / "timecourse.json")
    assert info["settings"]["predict"]["cluster"] == {"local_workers": 1}
    assert sum(info["dask_workers"].values()) == 3
    assert "dask_workers" not in read_json(serial / "timecourse.json")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--local-workers", "0"], "argument --local-workers: the value must be in [1, 1024], got 0"),
        (["--local-workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "exactly one of"),
        (["--jobs", "4"], "--jobs only go with --cluster slurm"),
        (["--cluster", "slurm", "--cores", "4"], "needs --cores and --memory"),
        (["--cluster", "slurm", "--cores", "4", "--memory", "lots"], "--memory: not a size"),
        (["--cluster", "slurm", "--cores", "4", "--memory", "8GB", "--walltime", "2h"], "--walltime"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        (
            ["--local-workers", "1", "--images-per-task", "0"],
            "argument --images-per-task: the value must be in [1,",
        ),
    ],
)
def test_bad_cluster_options_are_one_line(tmp_path, sample_images, capsys, extra, message):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # the unreachable scheduler
        rc = main(["predict", "-i", str(sample_images[0]), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_timecourse_bad_cluster_options_are_one_line(tmp_path, sample_images, capsys):
    """timecourse checks the cluster options with predict's code: one line, exit 2, nothing written."""
    argv = ["timecourse", "-i", str(sample_images[0]), "--out", str(tmp_path / "o")]
    assert main([*argv, "--jobs", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--jobs only go with --cluster slurm" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_slurm_job_script(monkeypatch):
    """The SLURMCluster our options make (no SLURM here: only its job script is checked)."""
    from livecell_seg.inference.distributed import make_slurm_cluster

    opts = ClusterOptions(cluster="slurm", jobs=3, cores=8, memory="32GB", walltime="02:00:00")
    with make_slurm_cluster(opts, scheduler_options=LOOPBACK_SCHEDULER) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -J livecell-seg" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=30G" in script  # dask-jobqueue's rounding of 32 GB (decimal) to GiB
    assert "#SBATCH -t 02:00:00" in script
    assert "--nthreads 1" in script and "--nworkers 8" in script  # one 1-thread worker per core
    assert sys.executable in script and "tcp://127.0.0.1:" in script
    # settings given in the Dask config (jobqueue.yaml) are used when the options leave them out
    import dask

    with dask.config.set(
        {"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "8GB", "jobqueue.slurm.queue": "gpu"}
    ):
        with make_slurm_cluster(ClusterOptions(cluster="slurm"), scheduler_options=LOOPBACK_SCHEDULER) as c:
            script = c.job_script()
    assert "#SBATCH -p gpu" in script and "--nworkers 4" in script and "#SBATCH -t 00:30:00" in script


def test_without_cluster_options_nothing_imports_dask(tmp_path, sample_images):
    """Serial predict (the CLI) runs without importing dask, distributed or dask_jobqueue."""
    probe = (
        "import sys; from livecell_seg.cli import main; "
        f"rc = main(['predict', '-i', {str(sample_images[0])!r}, '--out', {str(tmp_path / 'o')!r}, '-q']); "
        f"print(rc, sorted(m for m in sys.modules if m.split('.')[0] in {DASK_MODULES!r}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=HANG_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "[]"]
    assert (tmp_path / "o" / f"{sample_images[0].stem}.tif").is_file()
    # and the options are there, on every command that segments many images
    for command in ("predict", "timecourse"):
        helptext = subprocess.run(
            [sys.executable, "-m", "livecell_seg", command, "--help"], capture_output=True, text=True
        ).stdout
        for flag in (
            "--scheduler",
            "--local-workers",
            "--cluster",
            "--jobs",
            "--cores",
            "--memory",
            "--walltime",
        ):
            assert flag in helptext, (command, flag)


@pytest.mark.slow
def test_slurm_path_end_to_end_with_a_stand_in_sbatch(tmp_path, sample_images, monkeypatch, capsys):
    """--cluster slurm through dask-jobqueue for real, with ``sbatch``/``scancel`` replaced by
    stand-ins that run the generated job script on this machine (there is no SLURM here)."""
    import stat

    import dask

    bindir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bindir.mkdir()
    jobs.mkdir()
    (bindir / "sbatch").write_text(
        "#!/bin/bash\n"
        "# stand-in for sbatch: run the job script here, in a process group of its own\n"
        f'n=$(ls {jobs} | wc -l); cp "${{@: -1}}" {jobs}/job$n.sh\n'
        f"setsid bash {jobs}/job$n.sh > {jobs}/job$n.log 2>&1 < /dev/null &\n"
        f"echo $! > {jobs}/job$n.pid\n"
        'echo "Submitted batch job $!"\n'
    )
    (bindir / "scancel").write_text(
        '#!/bin/bash\nfor j in "$@"; do kill -TERM -- "-$j" 2>/dev/null; done\nexit 0\n'
    )
    for f in bindir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    imgs = [str(p) for p in sample_images[:3]]
    out = tmp_path / "slurm"
    loopback = {
        "jobqueue.slurm.scheduler-options": LOOPBACK_SCHEDULER,
        "jobqueue.slurm.worker-extra-args": ["--host", "127.0.0.1"],
    }
    try:
        with dask.config.set(loopback):
            rc = main(
                ["predict", "-i", *imgs, "--out", str(out), "--threads", "1", "--cluster", "slurm"]
                + ["--jobs", "1", "--cores", "2", "--memory", "4GB", "--walltime", "00:10:00"]
            )
        printed = capsys.readouterr()
        assert rc == 0, printed.err
        assert "dask: 3 image(s)" in printed.out and "on 2 worker(s)" in printed.out
        script = (jobs / "job0.sh").read_text()
        assert "#SBATCH -t 00:10:00" in script and "--nworkers 2" in script and "--nthreads 1" in script
        assert not (jobs / "job1.sh").exists()  # --jobs 1
        assert main(["predict", "-i", *imgs, "--out", str(tmp_path / "serial"), "--threads", "1", "-q"]) == 0
        for p in sample_images[:3]:
            assert (out / f"{p.stem}.tif").read_bytes() == (
                tmp_path / "serial" / f"{p.stem}.tif"
            ).read_bytes()
    finally:  # whatever scancel did not stop: the job scripts' process groups
        for pid_file in jobs.glob("job*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


class _PoisonPlugin(distributed.WorkerPlugin):
    """Worker plugin: in every worker process (restarted ones too), segmenting a file named
    ``poison*`` kills the process, as an out-of-memory kill would."""

    name = "livecell-seg-test-poison"

    def setup(self, worker) -> None:  # noqa: ANN001
        import livecell_seg.inference.predict as predict

        real = predict.segment_file

        def segment_file(model, path, *args, **kwargs):  # noqa: ANN001, ANN202
            if Path(path).name.startswith("poison"):
                os._exit(1)
            return real(model, path, *args, **kwargs)

        predict.segment_file = segment_file


@pytest.mark.slow
def test_an_image_that_kills_its_worker_is_isolated_and_reported(
    tmp_path, sample_images, capsys, monkeypatch
):
    """A task whose worker dies (more often than Dask's allowed-failures) is split into single
    images; the image that still kills its worker is reported as failed, the others complete."""
    import dask

    import livecell_seg.inference.distributed as dist

    inp = tmp_path / "in"
    inp.mkdir()
    for p in sample_images[:3]:
        os.link(p, inp / p.name)
    os.link(sample_images[3], inp / "poison.tif")
    paths = list_images(inp)
    open_client = dist.open_client

    @contextlib.contextmanager
    def open_client_with_poison(options):  # noqa: ANN001, ANN202
        with open_client(options) as (client, n):
            client.register_plugin(_PoisonPlugin())
            yield client, n

    monkeypatch.setattr(dist, "open_client", open_client_with_poison)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # first death -> KilledWorker
        summary = run_images(
            paths, tmp_path / "out", ClusterOptions(local_workers=1, images_per_task=2), progress=False
        )
    assert [str(p) for p, _ in summary.failed] == [str(inp / "poison.tif")]
    assert "died each time it was segmented" in summary.failed[0][1]
    assert summary.processed == [p for p in paths if p.name != "poison.tif"]
    err = capsys.readouterr().err
    assert sum("skipped" in line and "poison.tif" in line for line in err.splitlines()) == 1


@pytest.mark.slow
def test_benchmark_quick_runs():
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dask.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=HANG_S
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| Dask, 2 local workers |" in out.stdout and "overhead per image" in out.stdout
